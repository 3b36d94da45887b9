from detector.events import Assignment

T0 = 1_700_000_000_000


def ev(user, enrolled=True, variant="control", ts=T0, exp="exp", attrs=None):
    return Assignment(exp, user, variant if enrolled else None, enrolled, ts, attrs)
