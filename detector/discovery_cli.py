"""`detector discover`: experiments the detector has seen, and draft registrations for them.

    detector discover [--all] [--json | --csv] [--write DIR] [--force] [--url URL] [--token T]

Lists what the worker observed of every unregistered experiment (`--all`: every experiment):
distinct eligible and enrolled users, the enrolled fraction with its 95% Wilson interval, the
variant split, attribute values seen (a sample), first and last event. `--write DIR` writes one
draft registration per experiment (`DIR/<experiment>.yaml`; existing files are kept unless
`--force`), with the observed exposure rounded to a declaration and comments naming what to
review. Then: edit, `detector register DIR --dry-run`, `detector register DIR`.

Reads `GET /v1/discovery` on the worker (`--url`, else `$DETECTOR_URL`, else
http://127.0.0.1:6066), sending `--token`/`$DETECTOR_API_TOKEN` as a bearer token if given.
Exit codes: 0 ok, 2 usage, 4 the worker could not be reached or refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from detector import discovery
from detector.settings import env_default, worker_url_default

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 2, 4


def fetch(url: str, token: str | None, include_all: bool, timeout: float = 30.0) -> list[discovery.Exposure]:
    req = urllib.request.Request(url.rstrip("/") + "/v1/discovery" + ("?all=true" if include_all else ""),
                                 headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = json.loads(resp.read())
    return [discovery.exposure_from_dict(d) for d in body.get("experiments", [])]


def _table(rows: list[discovery.Exposure], out: TextIO) -> None:
    print(f"{'experiment':<40} {'eligible':>9} {'enrolled':>9} {'fraction (95% CI)':>24}  variants", file=out)
    for e in rows:
        frac = "-" if e.fraction is None else (
            f"{e.fraction:.4f} ({e.fraction_ci95[0]:.4f}-{e.fraction_ci95[1]:.4f})" if e.fraction_ci95 else f"{e.fraction:.4f}")
        variants = ", ".join(f"{k}={v}" for k, v in e.variants.items()) or "-"
        print(f"{e.experiment:<40} {e.eligible_users:>9} {e.enrolled_users:>9} {frac:>24}  {variants}", file=out)
        extra = []
        if e.segments_seen:
            extra.append("segments seen: " + "; ".join(f"{k}={','.join(v)}" for k, v in e.segments_seen.items()))
        extra.append(f"seen {discovery._rfc3339(e.first_seen_at)} .. {discovery._rfc3339(e.last_seen_at)}")
        if e.registered:
            extra.append("registered")
        print("    " + " | ".join(extra), file=out)


def write_drafts(rows: list[discovery.Exposure], directory: Path, force: bool = False) -> tuple[int, int]:
    """Write one draft per experiment; returns (written, kept because the file exists)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for e in rows:
        path = directory / f"{e.experiment}.yaml"
        if path.exists() and not force:
            kept += 1
            continue
        path.write_text(discovery.draft_yaml(e))
        written += 1
    return written, kept


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    p = argparse.ArgumentParser(prog="detector discover", description=__doc__.split("\n\n")[0])
    p.add_argument("--all", action="store_true", help="registered experiments too")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--write", metavar="DIR", help="write one draft registration per experiment into DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing draft files")
    p.add_argument("--url", default=worker_url_default())
    p.add_argument("--token", default=env_default("DETECTOR_API_TOKEN"))
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        rows = fetch(args.url, args.token, args.all)
    except urllib.error.HTTPError as exc:
        print(f"detector discover: {exc.code} from {args.url}: {exc.read()[:300].decode(errors='replace')}", file=err)
        return EXIT_UNAVAILABLE
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"detector discover: cannot read discovery from {args.url}: {exc}", file=err)
        return EXIT_UNAVAILABLE
    if args.json:
        print(json.dumps([e.to_dict() for e in rows], indent=2), file=out)
    elif args.csv:
        out.write(discovery.to_csv(rows))
    else:
        _table(rows, out)
    if args.write:
        written, kept = write_drafts(rows, Path(args.write), args.force)
        print(f"wrote {written} draft(s) to {args.write}" + (f" ({kept} existing kept; --force overwrites)" if kept else "")
              + f"; review them, then: detector register {args.write} --dry-run", file=err)
    return EXIT_OK
