"""GrowthBook SDK payload -> configured exposure per feature.

The payload the SDKs load (`GET /api/features/<client key>`, or the SDK webhook body):
`{"features": {id: {"defaultValue": ..., "rules": [...]}}, "savedGroups": {...}, "dateUpdated": ...}`.
Documented at https://docs.growthbook.io/lib/build-your-own and evaluated as the JS SDK does
(`packages/sdk-js/src/core.ts`, `evalFeature` and `runExperiment`):

* rules run in order; a rule whose `condition`, `parentConditions`, `filters` or namespace
  excludes the user falls through to the next;
* a **force** rule (`force`) sets the value for the users it includes: all who match the
  condition, or with `coverage` (or `range`) the share whose hash of `hashAttribute` falls
  in it; a forced value equal to `defaultValue` exposes nobody;
* an **experiment** rule (`variations`) puts `coverage` of the matching users in the
  experiment, split by `weights` (equal when missing or not summing to 1, as the SDK does)
  or by explicit `ranges`; variation names come from `meta[i].key` (else the index);
  a `passthrough` variation is not in the experiment;
* `condition` is GrowthBook's MongoDB-like query; `{"id": {"$in": [...]}}` on the hash
  attribute is a user list, `$inGroup`/`$notInGroup` refer to `savedGroups` of the payload.

The SDK webhook's "Standard" body (`{"type": "payload.changed", "data": {"payload": "<json>"}}`,
https://docs.growthbook.io/app/webhooks/sdk-webhooks) is unwrapped here too. Encrypted
features, a saved group missing from the payload, an unknown operator or a contextual bandit
make a feature "cannot tell".
"""

from __future__ import annotations

import json
from typing import Any

from detector.timestamps import parse_rfc3339

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

FORMAT = "growthbook"
_KNOWN_OPS = {
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$exists", "$in", "$nin", "$ini", "$nini", "$inGroup",
    "$notInGroup", "$not", "$size", "$elemMatch", "$all", "$alli", "$regex", "$regexi", "$type",
    "$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte",
}
_LOGICAL = {"$or", "$nor", "$and", "$not"}



def unwrap(doc: Any) -> dict:
    """The SDK payload itself, from a payload or a Standard SDK webhook body."""
    if not isinstance(doc, dict):
        raise FormatError("a GrowthBook SDK payload is a JSON object")
    data = doc.get("data")
    if "features" not in doc and isinstance(data, dict) and "payload" in data:
        payload = data["payload"]
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise FormatError(f"data.payload of the SDK webhook is not JSON: {exc}") from None
        return unwrap(payload)
    return doc


def is_payload(doc: Any) -> bool:
    """Whether `doc` carries features (a webhook may instead only say that the payload changed)."""
    try:
        d = unwrap(doc)
    except FormatError:
        return False
    return isinstance(d.get("features"), dict) or "encryptedFeatures" in d


def read(doc: Any) -> FlagDocument:
    """Every feature of the payload as `ConfiguredExposure` (raises `FormatError` on a non-payload)."""
    d = unwrap(doc)
    updated = _epoch_ms(d.get("dateUpdated"))
    if "encryptedFeatures" in d and not isinstance(d.get("features"), dict):
        return FlagDocument(FORMAT, {}, "the features are encrypted (encryptedFeatures): no decryption key", updated)
    features = d.get("features")
    if not isinstance(features, dict):
        raise FormatError("a GrowthBook SDK payload needs a `features` object")
    groups = d.get("savedGroups") if isinstance(d.get("savedGroups"), dict) else {}
    return FlagDocument(FORMAT, {str(k): read_feature(str(k), v, groups, updated) for k, v in features.items()},
                        None, updated)


def read_feature(key: str, feature: Any, saved_groups: dict | None = None, updated_at: int | None = None) -> ConfiguredExposure:
    if not isinstance(feature, dict):
        return ConfiguredExposure(FORMAT, key, cannot_tell="the feature definition is not an object", updated_at=updated_at)
    rules = feature.get("rules") or []
    if not isinstance(rules, list):
        return ConfiguredExposure(FORMAT, key, cannot_tell="`rules` is not a list", updated_at=updated_at)
    default = feature.get("defaultValue")
    out = []
    try:
        for i, rule in enumerate(rules, 1):
            if not isinstance(rule, dict):
                raise CannotTell(f"rule {i} is not an object")
            r = _rule(key, i, rule, default, saved_groups or {})
            if r is not None:
                out.append(r)
    except CannotTell as exc:
        return ConfiguredExposure(FORMAT, key, cannot_tell=str(exc), updated_at=updated_at)
    return ConfiguredExposure(FORMAT, key, True, tuple(out), None, updated_at)


def _rule(feature: str, i: int, rule: dict, default: Any, groups: dict) -> RuleExposure | None:
    label = str(rule.get("id") or f"rule {i}")
    hash_attr = str(rule.get("hashAttribute") or "id")
    users, conds = _condition(rule.get("condition"), hash_attr, groups, f"rule {i}")
    for pc in rule.get("parentConditions") or []:
        pid = pc.get("id") if isinstance(pc, dict) else None
        conds.append(Condition(f"prerequisite:{pid}", "other", text=f"prerequisite feature {pid!r} passes"))
    if rule.get("contextualBanditRef") or rule.get("contextualVariations"):
        raise CannotTell(f"rule {i} is a contextual bandit: its weights change at run time")
    gate = _hash_share(rule, i)
    if "force" in rule:
        if rule.get("range") is not None:
            share = _range_width(rule["range"], i)
        elif "coverage" in rule and rule["coverage"] is not None:
            share = _clamp(_number(rule["coverage"], f"rule {i}: coverage"))
        else:
            share = 1.0
        if rule["force"] == default:
            share = 0.0  # forces the default value: nobody gets anything else
        kind = "rollout" if ("coverage" in rule or "range" in rule) else "force"
        return RuleExposure(i, kind, share * gate, users, tuple(conds), {_name(rule["force"]): 1.0}, label)
    variations = rule.get("variations")
    if not isinstance(variations, list):
        return None  # the SDK skips a rule with neither force nor variations
    n = len(variations)
    meta: list = rule["meta"] if isinstance(rule.get("meta"), list) else []
    names = [str((meta[j] or {}).get("key", j)) if j < len(meta) and isinstance(meta[j], dict) else str(j) for j in range(n)]
    passthrough = {j for j in range(min(n, len(meta))) if isinstance(meta[j], dict) and meta[j].get("passthrough")}
    if rule.get("ranges") is not None:
        ranges = rule["ranges"]
        if not isinstance(ranges, list) or len(ranges) != n:
            raise CannotTell(f"rule {i}: `ranges` does not give one range per variation")
        widths = [_range_width(r, i) for r in ranges]
    else:
        coverage = rule.get("coverage", 1.0)
        coverage = 1.0 if coverage is None else _clamp(_number(coverage, f"rule {i}: coverage"))
        widths = [coverage * w for w in _weights(rule.get("weights"), n)]
    share = sum(w for j, w in enumerate(widths) if j not in passthrough)
    split = normalise({names[j]: widths[j] for j in range(n) if j not in passthrough})
    label = f"experiment {rule.get('key') or feature}" + (f" ({rule['id']})" if rule.get("id") else "")
    return RuleExposure(i, "experiment", min(1.0, share) * gate, users, tuple(conds), split, label)


def _weights(weights: Any, n: int) -> list[float]:
    """The SDK's getBucketRanges: equal weights when missing, of the wrong length or not summing to ~1."""
    equal = [1.0 / n] * n if n else []
    if not isinstance(weights, list) or len(weights) != n:
        return equal
    try:
        ws = [float(w) for w in weights]
    except (TypeError, ValueError):
        return equal
    total = sum(ws)
    return equal if total < 0.99 or total > 1.01 else ws


def _hash_share(rule: dict, i: int) -> float:
    """The share left by `namespace` ([id, start, end]) and `filters` (hash ranges)."""
    share = 1.0
    ns = rule.get("namespace")
    if ns is not None:
        if not isinstance(ns, list) or len(ns) != 3:
            raise CannotTell(f"rule {i}: `namespace` is not [id, start, end]")
        share *= _clamp(_number(ns[2], "namespace") - _number(ns[1], "namespace"))
    for f in rule.get("filters") or []:
        ranges = f.get("ranges") if isinstance(f, dict) else None
        if not isinstance(ranges, list):
            raise CannotTell(f"rule {i}: a filter without ranges")
        share *= _clamp(sum(_range_width(r, i) for r in ranges))
    return share


def _range_width(r: Any, i: int) -> float:
    if not isinstance(r, list) or len(r) != 2:
        raise CannotTell(f"rule {i}: a range is not [start, end]")
    return _clamp(_number(r[1], "range") - _number(r[0], "range"))


def _condition(cond: Any, hash_attr: str, groups: dict, where: str) -> tuple[tuple[str, ...] | None, list[Condition]]:
    """(user list on the hash attribute or None, other conditions) of a top-level condition."""
    if cond is None or cond == {}:
        return None, []
    if not isinstance(cond, dict):
        raise CannotTell(f"{where}: the condition is not an object")
    users: tuple[str, ...] | None = None
    out: list[Condition] = []
    for k, v in cond.items():
        if k == "$and" and isinstance(v, list):
            for sub in v:
                u, conds = _condition(sub, hash_attr, groups, where)
                users = intersect(users, u)
                out += conds
            continue
        if k in _LOGICAL:
            _check_ops(v, where)
            out.append(Condition(k, "other", text=f"{k} {json.dumps(v, sort_keys=True)[:200]}"))
            continue
        if k.startswith("$"):
            raise CannotTell(f"{where}: unknown operator {k!r} in the condition")
        c = _attribute_condition(k, v, groups, where)
        if k == hash_attr and c.op == "in":
            users = intersect(users, c.values)
        else:
            out.append(c)
    return users, out


def _attribute_condition(attr: str, spec: Any, groups: dict, where: str) -> Condition:
    if not isinstance(spec, dict) or not any(str(k).startswith("$") for k in spec):
        return Condition(attr, "in", (_name(spec),))  # direct equality
    if len(spec) != 1:
        _check_ops(spec, where)
        return Condition(attr, "other", text=f"{attr} {json.dumps(spec, sort_keys=True)[:200]}")
    (op, val), = spec.items()
    if op not in _KNOWN_OPS:
        raise CannotTell(f"{where}: unknown operator {op!r} on {attr!r}")
    if op in ("$inGroup", "$notInGroup"):
        if val not in groups:
            raise CannotTell(f"{where}: saved group {val!r} is not in the payload (enable saved-group references or inline it)")
        vals = groups[val]
        if not isinstance(vals, list):
            raise CannotTell(f"{where}: saved group {val!r} is not a list")
        return Condition(attr, "in" if op == "$inGroup" else "not_in", tuple(_name(x) for x in vals))
    if op in ("$in", "$nin") and isinstance(val, list):
        return Condition(attr, "in" if op == "$in" else "not_in", tuple(_name(x) for x in val))
    if op in ("$eq", "$ne") and not isinstance(val, (dict, list)):
        return Condition(attr, "in" if op == "$eq" else "not_in", (_name(val),))
    if op == "$not":
        _check_ops(val, where)
    return Condition(attr, "other", text=f"{attr} {op} {json.dumps(val, sort_keys=True)[:200]}")


def _check_ops(value: Any, where: str) -> None:
    """Unknown operators anywhere inside make the condition unreadable."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k.startswith("$") and k not in _KNOWN_OPS and k not in _LOGICAL:
                raise CannotTell(f"{where}: unknown operator {k!r} in the condition")
            _check_ops(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_ops(v, where)



def _name(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CannotTell(f"{what} is not a number: {value!r}")
    return float(value)


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def _epoch_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value, strict=False)  # the payload's dateUpdated (a time without a zone: unknown)
    except ValueError:
        return None
