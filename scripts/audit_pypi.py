"""Fallback dependency audit against PyPI's project JSON API (used by scripts/audit.sh).

pip-audit's `pypi` service asks `<json api>/<name>/<version>/json` for each installed
release. Where only the project endpoint `<json api>/<name>/json` is served (as on this
project's machines: the per-version endpoint answers 404, and pip-audit then *skips* every package
and still says "No known vulnerabilities found"), this script does what can still be done soundly:

* installed version == latest release: the project endpoint's `vulnerabilities` list is exactly
  the advisories for that release -> vulnerable if non-empty;
* installed version older than the latest: PyPI does not tell us its advisories here -> listed
  as UNAUDITED (a warning; with --strict it fails the audit: unknown is not safe). Upgrade it, or
  name it in AUDIT_ALLOW_OUTDATED (space- or comma-separated) once someone has checked it;
* not on PyPI (the editable project itself): skipped.

Exit 0 clean, 1 vulnerable (or unaudited with --strict), 2 the audit could not run.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

from packaging.utils import canonicalize_name
from packaging.version import Version


def _json_api() -> str:
    """PyPI's JSON API base, as pip knows it (no index host is written in this repository)."""
    from pip._internal.models.index import PyPI

    return PyPI.pypi_url


def installed() -> dict[str, str]:
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        direct = dist.read_text("direct_url.json") or ""
        if '"editable": true' in direct.replace(" ", "").replace('"editable":true', '"editable": true'):
            continue
        out[canonicalize_name(name)] = dist.version
    return out


def project(name: str) -> dict | None:
    url = f"{_json_api()}/{name}/json"
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            last = err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            last = err
    raise RuntimeError(f"PyPI unreachable for {name}: {last}")


def main() -> int:
    allow = {canonicalize_name(n) for n in os.environ.get("AUDIT_ALLOW_OUTDATED", "").replace(",", " ").split()}
    pkgs = installed()
    try:
        with ThreadPoolExecutor(8) as pool:
            data = dict(zip(pkgs, pool.map(project, pkgs)))
    except RuntimeError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    vulnerable, outdated, skipped, clean = [], [], [], 0
    for name, version in sorted(pkgs.items()):
        d = data[name]
        if d is None:
            skipped.append(f"{name} {version}: not on PyPI")
            continue
        latest = d["info"]["version"]
        if Version(version) == Version(latest):
            vulns = d.get("vulnerabilities") or []
            if vulns:
                for v in vulns:
                    fixed = ", ".join(v.get("fixed_in") or []) or "none yet"
                    vulnerable.append(f"{name} {version}: {v.get('id')} {' '.join(v.get('aliases') or [])} (fixed in {fixed})")
            else:
                clean += 1
        elif name in allow:
            skipped.append(f"{name} {version}: older than {latest}, allowed by AUDIT_ALLOW_OUTDATED")
        else:
            outdated.append(f"{name} {version}: older than the latest {latest}; its advisories are not available here")
    for line in vulnerable:
        print("VULNERABLE  " + line)
    for line in outdated:
        print("UNAUDITED   " + line)
    for line in skipped:
        print("skipped     " + line)
    print(f"audit (PyPI project API): {clean} clean, {len(vulnerable)} vulnerabilities, {len(outdated)} unaudited, {len(skipped)} skipped")
    strict = "--strict" in sys.argv[1:]
    return 1 if vulnerable or (strict and outdated) else 0


if __name__ == "__main__":
    sys.exit(main())
