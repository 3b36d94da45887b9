"""Unleash client features API -> configured exposure per feature toggle.

The document is the response of `GET /api/client/features` (what server SDKs poll,
https://docs.getunleash.io/reference/api/unleash/get-all-client-features):
`{"version": 2, "features": [{"name", "enabled", "strategies": [...], "variants": [...],
"dependencies": [...]}], "segments": [{"id", "constraints"}]}`. Evaluation as the Node
client does it (https://github.com/Unleash/unleash-client-node, `src/client.ts`):

* a disabled feature exposes nobody; an enabled one with no strategies exposes everyone;
* strategies are alternatives (the first that is enabled wins); each strategy's
  `constraints` and the constraints of its `segments` must all hold;
* built-in strategies (https://docs.getunleash.io/reference/activation-strategies):
  `default` (everyone), `flexibleRollout` (`rollout` percent, `stickiness`, `groupId`),
  `userWithId` (`userIds`, comma separated), `gradualRolloutUserId` / `gradualRolloutSessionId`
  / `gradualRolloutRandom` (`percentage`), `remoteAddress` (`IPs`), `applicationHostname`
  (`hostNames`);
* variants (feature level, or the strategy's own `variants`) split the exposed users by
  `weight` (out of the total weight, 1000 when Unleash balances them).

A constraint `userId IN [...]` is a user list; `IN`/`NOT_IN` and `STR_*` on other fields
are attribute conditions (`inverted` flips them); number, date and semver operators narrow
without mapping to values. A segment id missing from `segments`, an unknown operator or a
custom strategy make the feature "cannot tell".
"""

from __future__ import annotations

from typing import Any

from .model import (
    CannotTell,
    Condition,
    ConfiguredExposure,
    FlagDocument,
    FormatError,
    RuleExposure,
    intersect,
    normalise,
)

FORMAT = "unleash"
USER_FIELDS = ("userId",)
_OPERATORS = {
    "IN", "NOT_IN", "STR_ENDS_WITH", "STR_STARTS_WITH", "STR_CONTAINS", "NUM_EQ", "NUM_GT", "NUM_GTE",
    "NUM_LT", "NUM_LTE", "DATE_AFTER", "DATE_BEFORE", "SEMVER_EQ", "SEMVER_GT", "SEMVER_LT",
}
_STRING_OPS = {"STR_ENDS_WITH": "ends_with", "STR_STARTS_WITH": "starts_with", "STR_CONTAINS": "contains"}
_PERCENT_STRATEGIES = {"gradualRolloutUserId", "gradualRolloutSessionId", "gradualRolloutRandom"}



def is_document(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("features"), list)


def read(doc: Any) -> FlagDocument:
    if not is_document(doc):
        raise FormatError("an Unleash client features response is an object with a `features` list")
    segments = {}
    for s in doc.get("segments") or []:
        if isinstance(s, dict) and "id" in s:
            segments[s["id"]] = s.get("constraints") or []
    flags = {}
    for f in doc["features"]:
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            flags[f["name"]] = read_feature(f, segments)
    return FlagDocument(FORMAT, flags)


def read_feature(feature: dict, segments: dict | None = None) -> ConfiguredExposure:
    key = feature["name"]
    if not feature.get("enabled", False):
        return ConfiguredExposure(FORMAT, key, enabled=False)
    strategies = feature.get("strategies")
    if strategies is None:
        strategies = []
    if not isinstance(strategies, list):
        return ConfiguredExposure(FORMAT, key, cannot_tell="`strategies` is not a list")
    try:
        base: list[Condition] = [Condition(f"parent:{d.get('feature')}", "other", text=f"parent feature {d.get('feature')!r}")
                                 for d in feature.get("dependencies") or [] if isinstance(d, dict)]
        feature_split = _split(feature.get("variants"))
        rules: tuple[RuleExposure, ...]
        if not strategies:
            rules = (RuleExposure(1, "enabled", 1.0, None, tuple(base), feature_split, "enabled, no strategies"),)
        else:
            rules = tuple(_strategy(i, s, segments or {}, base, feature_split) for i, s in enumerate(strategies, 1))
    except CannotTell as exc:
        return ConfiguredExposure(FORMAT, key, cannot_tell=str(exc))
    return ConfiguredExposure(FORMAT, key, True, rules)


def _strategy(i: int, s: Any, segments: dict, base: list[Condition], feature_split: dict) -> RuleExposure:
    if not isinstance(s, dict):
        raise CannotTell(f"strategy {i} is not an object")
    name = s.get("name")
    params = s.get("parameters") or {}
    users: tuple[str, ...] | None = None
    conds = list(base)
    constraints = list(s.get("constraints") or [])
    for seg in s.get("segments") or []:
        if seg not in segments:
            raise CannotTell(f"strategy {i} uses segment {seg!r}, which the response does not include")
        constraints += segments[seg]
    for c in constraints:
        u, cond = _constraint(i, c)
        users = intersect(users, u)
        if cond is not None:
            conds.append(cond)
    if name == "default":
        share = 1.0
    elif name == "flexibleRollout":
        share = _percent(params.get("rollout"), i)
    elif name in _PERCENT_STRATEGIES:
        share = _percent(params.get("percentage"), i)
    elif name == "userWithId":
        ids = tuple(x.strip() for x in str(params.get("userIds") or "").split(",") if x.strip())
        users = intersect(users, ids)
        share = 1.0
    elif name == "remoteAddress":
        share = 1.0
        conds.append(Condition("remoteAddress", "in", tuple(x.strip() for x in str(params.get("IPs") or "").split(",") if x.strip())))
    elif name == "applicationHostname":
        share = 1.0
        conds.append(Condition("hostname", "in", tuple(x.strip() for x in str(params.get("hostNames") or "").split(",") if x.strip())))
    else:
        raise CannotTell(f"strategy {i} is the custom strategy {name!r}")
    split = _split(s.get("variants")) if s.get("variants") else feature_split
    label = f"{name}" + (f" {s['id']}" if s.get("id") else "")
    return RuleExposure(i, str(name), share, users, tuple(conds), split, label)


def _constraint(i: int, c: Any) -> tuple[tuple[str, ...] | None, Condition | None]:
    if not isinstance(c, dict):
        raise CannotTell(f"strategy {i}: a constraint is not an object")
    field, op = c.get("contextName"), c.get("operator")
    if op not in _OPERATORS:
        raise CannotTell(f"strategy {i}: unknown constraint operator {op!r}")
    inverted = bool(c.get("inverted"))
    values = tuple(str(v).strip() for v in (c.get("values") or []) if str(v).strip())
    if op in ("IN", "NOT_IN"):
        positive = (op == "IN") != inverted
        if field in USER_FIELDS and positive:
            return values, None
        return None, Condition(str(field), "in" if positive else "not_in", values)
    if op in _STRING_OPS and not inverted and not c.get("caseInsensitive"):
        return None, Condition(str(field), _STRING_OPS[op], values)  # type: ignore[arg-type]
    value = c.get("value", values)
    text = f"{'not ' if inverted else ''}{field} {op} {value}"
    return None, Condition(str(field), "other", text=text)


def _percent(value: Any, i: int) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise CannotTell(f"strategy {i}: rollout {value!r} is not a number") from None
    return min(1.0, max(0.0, p / 100.0))


def _split(variants: Any) -> dict[str, float]:
    if not isinstance(variants, list):
        return {}
    weights: dict[str, float] = {}
    for v in variants:
        if isinstance(v, dict) and isinstance(v.get("name"), str):
            try:
                weights[v["name"]] = weights.get(v["name"], 0.0) + float(v.get("weight", 0))
            except (TypeError, ValueError):
                raise CannotTell(f"variant {v['name']!r} has a weight that is not a number") from None
    return normalise(weights)
