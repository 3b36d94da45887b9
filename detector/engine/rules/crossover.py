"""`variant_crossover`: a user seen in more than one variant of the same experiment.

Bucketing must be sticky: a user who saw control and then treatment contaminates both arms
(and was shown something nobody meant them to see). Needs each user's first variant.

What is kept, and what is guaranteed. Each tracked user costs one entry, id -> first non-null
variant: every enrolled user while the experiment has at most `TRACKED_USERS` (1,024) of them
with a variant; beyond, those whose (process-salted) string hash is below a limit that halves
the set when it outgrows 1,280 entries: a random sample of ~1,024 that only shrinks within a
process (after a restart the kept entries stay and the limit applies to the new hash). So:
- no false alarm: a finding needs one id seen in two different variants (exact ids and names,
  no fingerprints), across batches for a tracked user, inside one batch for any user;
- every crossover is seen while the experiment has <= 1,024 enrolled users with a variant;
  beyond, a user who crosses over is seen with probability ~1,024 / (enrolled users), so a
  crossover hitting m users is found after ~(enrolled users / 1,024) of them (at 20,000
  enrolled users about 1 in 20: within 100 affected users with probability > 99%); inside
  one batch, always.
Memory: at most 1,280 entries per experiment with declared variants (~120 KB in RAM, ~25 KiB
in a checkpoint at 20-byte ids). A batch whose users all re-log their first variant costs
three C-level passes over its distinct enrolled users.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress, repeat
from operator import and_, attrgetter, is_, ne, not_
from typing import TYPE_CHECKING, Any

import msgspec

from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, constant, tmin
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

CROSSOVER_BIT = 256
TRACKED_USERS = 1024
_ALL = 1 << 62  # above every masked hash: every user tracked
_MASK = (1 << 61) - 1
_user_of = attrgetter("user_id")
_variant_of = attrgetter("variant")


class CrossoverState(msgspec.Struct, array_like=True):
    first: dict[str, str] = {}  # tracked user -> their first variant
    limit: int = _ALL  # new users are tracked when hash(id) & _MASK is below it


def _trim(first: dict[str, str], keep: int) -> tuple[dict[str, str], int]:
    """The `keep` users of smallest hash, and the limit below which they are."""
    ranked = sorted(first, key=lambda u: hash(u) & _MASK)
    return {u: first[u] for u in ranked[:keep]}, hash(ranked[keep]) & _MASK


class VariantCrossover(Rule):
    name = "variant_crossover"
    bit = CROSSOVER_BIT
    State = CrossoverState

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and bool(exp.variants)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"sticky_variants": True, "variants": sorted(exp.variants or ())}

    def judge(self, st: "ExperimentState", batch: Batch, plan: Plan) -> Finding | None:
        enr_first = batch.enr_first
        if not enr_first:
            return None
        rs = self.state(st)
        first = rs.first
        uids = list(enr_first)
        vs = list(map(_variant_of, enr_first.values()))
        olds = list(map(first.get, uids))
        offending: dict[str, Any] = {}
        if olds != vs:  # some user is new to the map, or crossed over (C-level passes, no per-user Python)
            limit = rs.limit
            allnew = olds.count(None) == len(olds)  # common: then nobody can have crossed over
            isnew = olds if allnew else list(map(is_, olds, repeat(None)))
            pairs = zip(uids, vs)
            if limit == _ALL:
                first.update(pairs if allnew else compress(pairs, isnew))
            else:
                admit = map(limit.__gt__, map(_MASK.__and__, map(hash, uids)))
                first.update(compress(pairs, admit if allnew else map(and_, isnew, admit)))
            if None in vs:  # enrolled without a variant: not a first variant (missing_variant's case)
                for uid in compress(uids, map(is_, vs, repeat(None))):
                    if first.get(uid, 0) is None:
                        del first[uid]
            if not allnew:
                changed = list(map(and_, map(ne, olds, vs), map(not_, isnew)))
                if any(changed):
                    for uid, v in compress(zip(uids, vs), changed):
                        if v is not None:
                            offending[uid] = enr_first[uid]
            if len(first) > TRACKED_USERS + TRACKED_USERS // 4:
                rs.first, rs.limit = _trim(first, TRACKED_USERS)
        enr = batch.enr_events
        if len(enr) > len(enr_first) and len(set(zip(map(_user_of, enr), map(_variant_of, enr)))) > len(enr_first):
            for e in enr:  # some user has two variants (or a variant and none) inside this batch
                v, uid = e.variant, e.user_id
                if v is not None and uid not in offending:
                    v0 = enr_first[uid].variant
                    if v0 is not None and v != v0:
                        offending[uid] = e
        if not offending:
            return None
        new = self.record(st, offending.values(), plan.config)
        if not new:
            return None
        return self.finding(
            st, plan, new, tmin(new),
            observed_extra={"tracked_users": len(rs.first), "tracking": "all" if rs.limit == _ALL else "sample"},
            summary=f"{st.experiment}: {st.rule_count[self.name]} users seen in more than one variant "
                    f"(bucketing not sticky)")

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        return st.rule_count.get(self.name, 0) > 0

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        return constant(self.active(exp))

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        first = dict(other.first)
        first.update(mine.first)
        limit = min(mine.limit, other.limit)
        if len(first) > TRACKED_USERS:
            first, limit = _trim(first, TRACKED_USERS)
        return CrossoverState(first, limit)


RULE = VariantCrossover()
