from detector.events import Assignment

T0 = 1_700_000_000_000


def ev(user, enrolled=True, variant="control", ts=T0, exp="exp", attrs=None):
    return Assignment(exp, user, variant if enrolled else None, enrolled, ts, attrs)


def healthy_stream(rng, users, weights, enrol_p=0.3, max_events=20, exp="exp", t0=T0, prefix="u"):
    """A healthy stream: each user has a sticky variant drawn from the declared weights (> 0) and
    1..max_events events (a returning user re-logs the same variant), enrolled with probability
    enrol_p (else every event of theirs is not enrolled); events of different users interleave."""
    names = [v for v, w in weights.items() if w > 0]
    probs = [weights[v] for v in names]
    evs = []
    for i in range(users):
        uid = f"{prefix}{i}"
        enrolled = rng.random() < enrol_p
        variant = rng.choices(names, probs)[0] if enrolled else None
        evs += [(rng.random(), uid, enrolled, variant) for _ in range(rng.randint(1, max_events))]
    evs.sort()
    return [Assignment(exp, uid, variant, enrolled, t0 + k, None) for k, (_, uid, enrolled, variant) in enumerate(evs)]


def run_batches(st, exp, evs, batch, config=None):
    """Feed `evs` in batches of `batch` events; all findings in order."""
    from detector.engine import DEFAULT_CONFIG, process_batch

    out = []
    for i in range(0, len(evs), batch):
        out += process_batch(st, exp, evs[i:i + batch], config or DEFAULT_CONFIG)
    return out
