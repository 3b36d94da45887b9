"""Where flag configurations come from: `DETECTOR_FLAG_SOURCES` and reading one source.

`DETECTOR_FLAG_SOURCES="growthbook=URL,flagd=PATH_OR_URL,unleash=URL"`: each entry is
`kind=location`, kind one of `growthbook`, `flagd`, `unleash`; location

* an `http(s)://` URL, polled with `If-None-Match` (the ETag of the last answer), e.g.
  GrowthBook's `https://cdn.growthbook.io/api/features/<client key>`, Unleash's
  `https://unleash.example.com/api/client/features`, flagd's HTTP sync URL;
* a file or a directory (a mounted ConfigMap: every `*.json`, `*.yaml`, `*.yml` in it, dot
  files and Kubernetes' `..data` links skipped), read again when its content changes;
* `webhook`: nothing is polled; documents arrive at `POST /v1/flag-sources/{name}/webhook`.

Several entries of one kind are allowed: the first is named after its kind (`growthbook`),
the next `growthbook-2`, ...; `kind.name=location` names one explicitly (`unleash.eu=URL`).
A registration's `flag.source` is a name or a kind (any source of that kind).
Credentials come from the environment: `DETECTOR_UNLEASH_API_TOKEN` is sent as Unleash's
`Authorization` header, `DETECTOR_FLAGD_AUTH_TOKEN` as a bearer token to flagd URLs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import flagd, growthbook, unleash
from .model import FlagDocument, FormatError

READERS = {"flagd": flagd.read, "growthbook": growthbook.read, "unleash": unleash.read}
KINDS = tuple(READERS)
WEBHOOK = "webhook"
_NAME_RE = re.compile(r"[a-z][a-z0-9._-]{0,63}")
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SourceSpec:
    name: str
    kind: str
    location: str

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    @property
    def push_only(self) -> bool:
        return self.location == WEBHOOK

    def matches(self, wanted: str | None) -> bool:
        """Whether a registration's `flag.source` (a name, a kind or None for any) means this source."""
        return wanted is None or wanted == self.name or wanted == self.kind


def parse_sources(text: str) -> list[SourceSpec]:
    """The sources of `DETECTOR_FLAG_SOURCES`; ValueError with the offending entry otherwise."""
    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        head, sep, location = entry.partition("=")
        head, location = head.strip().lower(), location.strip()
        kind, _, explicit = head.partition(".")
        if not sep or not location:
            raise ValueError(f"DETECTOR_FLAG_SOURCES entry {entry!r}: expected kind=location (e.g. flagd=/etc/flags)")
        if kind not in READERS:
            raise ValueError(f"DETECTOR_FLAG_SOURCES entry {entry!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        if explicit:
            name = head
        else:
            seen[kind] = seen.get(kind, 0) + 1
            name = kind if seen[kind] == 1 else f"{kind}-{seen[kind]}"
        if _NAME_RE.fullmatch(name) is None or any(s.name == name for s in specs):
            raise ValueError(f"DETECTOR_FLAG_SOURCES entry {entry!r}: source name {name!r} is invalid or repeated")
        specs.append(SourceSpec(name, kind, location))
    return specs


def unconfigured_flag_source(exp, specs: list[SourceSpec]):
    """A registration risk when `flag.source` names no configured source: its flag would not be checked."""
    from detector.registration.risk import Risk

    wanted = exp.flag.source if exp is not None and exp.flag is not None else None
    if wanted is None or any(s.matches(wanted) for s in specs):
        return []
    known = ", ".join(sorted({s.name for s in specs} | {s.kind for s in specs})) or "none (DETECTOR_FLAG_SOURCES is unset)"
    return [Risk("unknown_flag_source", "flag.source",
                 f"no flag source {wanted!r} is configured on this worker (configured: {known}): the flag's "
                 "configuration will not be compared with this registration")]


def request_headers(spec: SourceSpec, *, unleash_token: str = "", flagd_token: str = "") -> dict[str, str]:
    """Headers for polling a URL source (credentials from the environment, never logged)."""
    headers = {"Accept": "application/json", "User-Agent": "exposure-detector"}
    if spec.kind == "unleash":
        headers["UNLEASH-APPNAME"] = "exposure-detector"
        if unleash_token:
            headers["Authorization"] = unleash_token  # Unleash client tokens go without a scheme
    if spec.kind == "flagd" and flagd_token:
        headers["Authorization"] = f"Bearer {flagd_token}"
    return headers


def parse_bytes(data: bytes, name: str = "") -> Any:
    """JSON (or YAML for .yaml/.yml files, as flagd accepts); FormatError when neither."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise FormatError(f"document of {len(data)} bytes exceeds {MAX_DOCUMENT_BYTES}")
    if name.endswith((".yaml", ".yml")):
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise FormatError(f"not YAML: {str(exc)[:200]}") from None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise FormatError(f"not JSON: {exc}") from None


def read_document(kind: str, doc: Any) -> FlagDocument:
    return READERS[kind](doc)


def merge(kind: str, docs: list[FlagDocument]) -> FlagDocument:
    """Several files of one directory as one document (later files win for a repeated key)."""
    flags: dict = {}
    problems = [d.cannot_tell for d in docs if d.cannot_tell]
    for d in docs:
        flags.update(d.flags)
    updated = max((d.updated_at for d in docs if d.updated_at is not None), default=None)
    return FlagDocument(kind, flags, "; ".join(problems) or None, updated)


def read_path(spec: SourceSpec) -> tuple[str, FlagDocument]:
    """(content digest, document) of a file or directory source; OSError / FormatError on failure."""
    path = Path(spec.location)
    files = sorted(p for p in path.iterdir() if _config_file(p)) if path.is_dir() else [path]
    digest = hashlib.sha256()
    docs = []
    for f in files:
        data = f.read_bytes()
        digest.update(f.name.encode() + b"\0" + data + b"\0")
        try:
            docs.append(read_document(spec.kind, parse_bytes(data, f.name)))
        except FormatError as exc:
            raise FormatError(f"{f.name}: {exc}") from None
    return digest.hexdigest(), merge(spec.kind, docs)


def _config_file(p: Path) -> bool:
    return not p.name.startswith(".") and p.suffix in (".json", ".yaml", ".yml") and p.is_file() and os.access(p, os.R_OK)
