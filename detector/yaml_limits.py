"""Bounds on the work a YAML document can ask for, checked before anything is built from it.

YAML aliases let a few hundred bytes name a structure of billions of nodes ("billion laughs"):
building it, or merely rendering it in an error message, stalls the process. A loader that
mixes in `BoundedLoader` measures the document's node graph as it would be expanded (each
alias counted as a full copy of what it names) and refuses it, with a short message, when it
exceeds `MAX_EXPANDED_NODES`, or when an alias refers to itself. The measure costs one pass
over the distinct nodes, however many times they are referenced.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

MAX_EXPANDED_NODES = 1_000_000

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 4, 4, 2


def short_repr(value: Any) -> str:
    """A bounded repr, for error messages that quote a value from the document."""
    return _short.repr(value)


def expanded_size(node: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """How many nodes `node` stands for once every alias is expanded; raises past `limit`."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise yaml.constructor.ConstructorError(None, None, "recursive alias (an anchor used inside itself)",
                                                    n.start_mark)
        in_progress.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for child in n.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        in_progress.discard(key)
        if total > limit:
            raise yaml.constructor.ConstructorError(
                None, None, f"the document expands to more than {limit} nodes (through aliases); refused",
                n.start_mark)
        sizes[key] = total
        return total

    return size(node)


class BoundedLoader:
    """Mix in before a SafeLoader (C or Python): every document is measured before it is built."""

    max_expanded_nodes = MAX_EXPANDED_NODES

    def construct_document(self, node: yaml.Node) -> Any:
        expanded_size(node, self.max_expanded_nodes)
        return super().construct_document(node)  # type: ignore[misc]
