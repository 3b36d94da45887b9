"""OpenFeature flagd flag definitions -> configured exposure per flag.

The document is flagd's flag definition file (https://flagd.dev/reference/flag-definitions/,
JSON Schema https://flagd.dev/schema/v0/flags.json): `{"flags": {key: {"state", "variants",
"defaultVariant", "targeting"}}, "$evaluators": {...}}`. Evaluation, as flagd documents it:

* `state: DISABLED` exposes nobody (reason `DISABLED`);
* no targeting: everyone gets `defaultVariant` (reason `STATIC`), i.e. 100% exposed
  (a null or missing `defaultVariant` falls back to the code default: reason `DEFAULT`);
* targeting is JsonLogic returning a variant name (`true`/`false` name the variants
  "true"/"false"); `null` means the default variant (reason `DEFAULT`: not exposed);
* `if` chains (`[c1, r1, c2, r2, ..., else]`) are read branch by branch: a branch reaches
  the users for whom its condition holds and the earlier ones did not;
* `fractional` ([optional bucketing expression, [variant, weight], ...], weights relative,
  default 1; https://flagd.dev/reference/custom-operations/fractional-operation/) splits
  everyone who reaches it;
* `$ref` points into `$evaluators`.

Exposed means "the evaluation reports a targeting match or a static value", the same rule
the OpenFeature exposure decoder (`detector.adapters.openfeature`) applies to the events.
`{"in": [{"var": "targetingKey"}, [ids]]}` is a user list; `in`/`==` on another attribute,
`starts_with`, `ends_with` are attribute conditions; other known operators narrow without
mapping to values; an unknown operator, a `$ref` that does not resolve or a variant taken
from the context make the flag "cannot tell".
"""

from __future__ import annotations

import json
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

FORMAT = "flagd"
USER_KEYS = ("targetingKey",)
_JSONLOGIC = {
    "==", "===", "!=", "!==", "!", "!!", "or", "and", "if", "?:", ">", ">=", "<", "<=", "max", "min", "+", "-",
    "*", "/", "%", "map", "reduce", "filter", "all", "none", "some", "merge", "in", "cat", "substr", "log",
    "var", "missing", "missing_some",
}
_FLAGD_OPS = {"fractional", "starts_with", "ends_with", "sem_ver"}



def is_document(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("flags"), dict)


def read(doc: Any) -> FlagDocument:
    if not is_document(doc):
        raise FormatError("a flagd flag definition document is an object with a `flags` object")
    evaluators = doc.get("$evaluators") if isinstance(doc.get("$evaluators"), dict) else {}
    return FlagDocument(FORMAT, {str(k): read_flag(str(k), v, evaluators) for k, v in doc["flags"].items()})


def read_flag(key: str, flag: Any, evaluators: dict | None = None) -> ConfiguredExposure:
    if not isinstance(flag, dict):
        return ConfiguredExposure(FORMAT, key, cannot_tell="the flag definition is not an object")
    state = flag.get("state", "ENABLED")
    if state not in ("ENABLED", "DISABLED"):
        return ConfiguredExposure(FORMAT, key, cannot_tell=f"unknown state {state!r}")
    if state == "DISABLED":
        return ConfiguredExposure(FORMAT, key, enabled=False)
    variants = flag.get("variants")
    if not isinstance(variants, dict) or not variants:
        return ConfiguredExposure(FORMAT, key, cannot_tell="the flag has no variants")
    default = flag.get("defaultVariant")
    targeting = flag.get("targeting")
    if targeting in (None, {}):
        if default is None:
            return ConfiguredExposure(FORMAT, key, True, ())  # code default for everyone: reason DEFAULT
        return ConfiguredExposure(FORMAT, key, True, (RuleExposure(1, "static", 1.0, None, (), {str(default): 1.0},
                                                                    f"static default variant {default}"),))
    walker = _Walker(set(variants), evaluators or {})
    try:
        walker.result(targeting, [], None)
    except CannotTell as exc:
        return ConfiguredExposure(FORMAT, key, cannot_tell=str(exc))
    return ConfiguredExposure(FORMAT, key, True, tuple(walker.rules))


class _Walker:
    """Collects the branches of a targeting expression as rules, in evaluation order."""

    def __init__(self, variants: set[str], evaluators: dict) -> None:
        self.variants = variants
        self.evaluators = evaluators
        self.rules: list[RuleExposure] = []

    def _deref(self, node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"$ref"}:
            name = node["$ref"]
            if name not in self.evaluators:
                raise CannotTell(f"$ref {name!r} is not in $evaluators")
            return self.evaluators[name]
        return node

    def result(self, node: Any, conds: list[Condition], users: tuple[str, ...] | None) -> None:
        """Record what a result expression exposes to users reaching it under `conds`/`users`."""
        node = self._deref(node)
        if node is None:
            return  # default variant: reason DEFAULT, not exposed
        if isinstance(node, bool):
            node = "true" if node else "false"
        if isinstance(node, str):
            if node not in self.variants:
                return  # an invalid variant is an evaluation error: not exposed
            self._add("variant", 1.0, users, conds, {node: 1.0}, f"variant {node}")
            return
        if not isinstance(node, dict) or len(node) != 1:
            raise CannotTell(f"cannot read the targeting expression {json.dumps(node)[:120]}")
        (op, args), = node.items()
        if op == "if":
            self._if(args, conds, users)
        elif op == "fractional":
            self._fractional(args, conds, users)
        elif op in _JSONLOGIC or op in _FLAGD_OPS:
            raise CannotTell(f"the variant comes from a {op!r} expression over the evaluation context")
        else:
            raise CannotTell(f"unknown operator {op!r}")

    def _if(self, args: Any, conds: list[Condition], users: tuple[str, ...] | None) -> None:
        if not isinstance(args, list) or not args:
            return
        before = list(conds)
        pairs = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
        for cond, res in pairs:
            cond = self._deref(cond)
            if cond is False or cond is None:
                continue
            if cond is True:
                self.result(res, before, users)
                return
            u, c = self.condition(cond)
            self.result(res, before + c, intersect(users, u))
            before = before + [_negated(cond, u, c)]
        if len(args) % 2 == 1:
            self.result(args[-1], before, users)

    def _fractional(self, args: Any, conds: list[Condition], users: tuple[str, ...] | None) -> None:
        if not isinstance(args, list):
            raise CannotTell("fractional takes an array")
        buckets = [a for a in args if isinstance(a, list)]
        if args and not isinstance(args[0], list):
            self._check(args[0])
        weights: dict[str, float] = {}
        for b in buckets:
            if not b or not isinstance(b[0], str):
                raise CannotTell(f"fractional bucket {json.dumps(b)[:60]} does not name a variant")
            w = b[1] if len(b) > 1 else 1
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise CannotTell(f"fractional weight {w!r} is not a non-negative number")
            if b[0] in self.variants:  # an unknown variant is an evaluation error: not exposed
                weights[b[0]] = weights.get(b[0], 0.0) + float(w)
        total = sum(float(b[1]) if len(b) > 1 else 1.0 for b in buckets)
        share = (sum(weights.values()) / total) if total > 0 else 0.0
        self._add("fractional", share, users, conds, normalise(weights), "fractional")

    def _add(self, kind, share, users, conds, split, label) -> None:
        self.rules.append(RuleExposure(len(self.rules) + 1, kind, share, users, tuple(conds), split, label))

    def condition(self, node: Any) -> tuple[tuple[str, ...] | None, list[Condition]]:
        """(user list, conditions) a condition expression restricts to."""
        node = self._deref(node)
        self._check(node)
        if isinstance(node, dict) and len(node) == 1:
            (op, args), = node.items()
            if op == "and" and isinstance(args, list):
                users, out = None, []
                for a in args:
                    u, c = self.condition(a)
                    users = intersect(users, u)
                    out += c
                return users, out
            attr = _var(args[0]) if isinstance(args, list) and len(args) == 2 else None
            if op == "in" and attr and isinstance(args[1], list):
                vals = tuple(str(v) for v in args[1])
                return (vals, []) if attr in USER_KEYS else (None, [Condition(attr, "in", vals)])
            if op in ("==", "===") and isinstance(args, list) and len(args) == 2:
                a, v = (args[0], args[1]) if _var(args[0]) else (args[1], args[0])
                name = _var(a)
                if name and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                    return ((str(v),), []) if name in USER_KEYS else (None, [Condition(name, "in", (str(v),))])
            if op in ("!=", "!==") and attr and isinstance(args[1], (str, int, float)):
                return None, [Condition(attr, "not_in", (str(args[1]),))]
            if op in ("starts_with", "ends_with") and attr and isinstance(args[1], str):
                return None, [Condition(attr, op, (args[1],))]
        return None, [Condition(_attributes(node), "other", text=json.dumps(node, sort_keys=True)[:200])]

    def _check(self, node: Any) -> None:
        """Unknown operators or unresolved $refs anywhere in a condition make it unreadable."""
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    self._deref(node)
                elif k not in _JSONLOGIC and k not in _FLAGD_OPS:
                    raise CannotTell(f"unknown operator {k!r}")
                self._check(v)
        elif isinstance(node, list):
            for v in node:
                self._check(v)


def _negated(cond: Any, users: tuple[str, ...] | None, conds: list[Condition]) -> Condition:
    if users is None and len(conds) == 1 and conds[0].op == "in":
        return Condition(conds[0].attribute, "not_in", conds[0].values)
    return Condition(_attributes(cond), "other", text="not " + json.dumps(cond, sort_keys=True)[:200])


def _var(node: Any) -> str | None:
    if isinstance(node, dict) and set(node) == {"var"}:
        v = node["var"]
        if isinstance(v, list) and v:
            v = v[0]
        return v if isinstance(v, str) else None
    return None


def _attributes(node: Any) -> str:
    found: list[str] = []

    def walk(n):
        name = _var(n)
        if name:
            found.append(name)
        elif isinstance(n, dict):
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(node)
    return ",".join(dict.fromkeys(found)) or "(expression)"

