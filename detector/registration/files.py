"""Registrations in YAML files: one document, a list, or several documents per file.

The loader keeps timestamps as strings (so files and JSON bodies are validated identically) and
rejects duplicate keys (PyYAML would silently keep the last one). Errors name the file, and the
entry when a file holds several.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from detector.registration.compiled import CompiledRegistration
from detector.registration.errors import FieldError, RegistrationError
from detector.registration.model import parse_registration
from detector.yaml_limits import BoundedLoader, short_repr


class _Loader(BoundedLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that keeps timestamps as strings, rejects duplicate keys and bounds alias expansion."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {short_repr(key)}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {short_repr(key)}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_load(text: str | bytes) -> Any:
    """Load exactly one YAML (or JSON) document with the registration loader."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def load_yaml_documents(text: str | bytes, source: str = "(input)") -> list[Any]:
    """All registrations in a YAML text: one mapping, a list of mappings, or several documents."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))  # noqa: S506 - SafeLoader subclass
    except RecursionError:
        raise RegistrationError([FieldError("(document)", "invalid YAML: nested too deeply", source)]) from None
    except yaml.YAMLError as exc:
        raise RegistrationError([FieldError("(document)", f"invalid YAML: {exc}", source)]) from None
    out: list[Any] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, list):
            out.extend(doc)
        else:
            out.append(doc)
    return out


def load_file(path: str | os.PathLike[str]) -> list[CompiledRegistration]:
    """Every registration in one YAML file; errors name the file (and the entry, if several)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RegistrationError([FieldError("(file)", f"cannot read: {exc.strerror or exc}", source)]) from None
    raws = load_yaml_documents(text, source)
    if not raws:
        raise RegistrationError([FieldError("(file)", "holds no registration", source)])
    errors: list[FieldError] = []
    out: list[CompiledRegistration] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raws):
        where = source if len(raws) == 1 else f"{source}[{i}]"
        try:
            exp = parse_registration(raw)
        except RegistrationError as exc:
            errors += [FieldError(e.field, e.message, where) for e in exc.errors]
            continue
        if exp.experiment in seen:
            errors.append(
                FieldError("experiment", f"{exp.experiment!r} is registered twice in this file "
                           f"(entries {seen[exp.experiment]} and {i})", where)
            )
            continue
        seen[exp.experiment] = i
        out.append(exp)
    if errors:
        raise RegistrationError(errors)
    return out


def yaml_files(path: str | os.PathLike[str]) -> list[Path]:
    """The *.yaml / *.yml files under a directory, recursively, sorted; hidden paths are skipped
    (so a Kubernetes ConfigMap mount's `..data` links are not read twice)."""
    root = Path(path)
    files = []
    for candidate in root.rglob("*"):
        rel = candidate.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            files.append(candidate)
    return sorted(files)


def load_dir(path: str | os.PathLike[str]) -> dict[str, CompiledRegistration]:
    """Every registration in the YAML files under a directory, keyed by experiment.

    All files are validated before anything is returned: one bad file fails the whole load with
    a `RegistrationError` listing every problem with its file. An experiment registered in two
    files is an error naming both.
    """
    root = Path(path)
    if not root.is_dir():
        raise RegistrationError([FieldError("(directory)", "is not a directory", str(root))])
    errors: list[FieldError] = []
    out: dict[str, CompiledRegistration] = {}
    where: dict[str, str] = {}
    for file in yaml_files(root):
        try:
            registrations = load_file(file)
        except RegistrationError as exc:
            errors += exc.errors
            continue
        for exp in registrations:
            if exp.experiment in out:
                errors.append(
                    FieldError("experiment", f"{exp.experiment!r} is also registered in {where[exp.experiment]}",
                               str(file))
                )
                continue
            out[exp.experiment] = exp
            where[exp.experiment] = str(file)
    if errors:
        raise RegistrationError(errors)
    return out


def load_path(path: str | os.PathLike[str]) -> dict[str, CompiledRegistration]:
    """A file or a directory, as `load_dir` returns it."""
    p = Path(path)
    if p.is_dir():
        return load_dir(p)
    return {e.experiment: e for e in load_file(p)}
