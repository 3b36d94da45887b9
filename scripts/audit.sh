#!/usr/bin/env bash
# Dependency audit: known vulnerabilities in the packages installed in the project's venv
# (runtime + test extras, what `make install` installed).
#   scripts/audit.sh             audit .venv; exit 0 clean, 1 vulnerable, 2 the audit could not run
#   scripts/audit.sh --strict    also fail on packages whose advisories could not be looked up
#
# Source of advisories: PyPI (the PyPA advisory database, served per release). PyPI is the only
# vulnerability source every machine of this project (developers, CI) can reach: OSV,
# pip-audit's other service, is not reachable here.
#  1. Where PyPI serves the per-release JSON API (<json api>/<name>/<version>/json),
#     run pip-audit with `--vulnerability-service pypi --strict` (strict: a package that could not
#     be audited fails instead of being skipped in silence).
#  2. Where it does not (this project's machines answer 404 there, and plain pip-audit then skips
#     every package and still prints "No known vulnerabilities found"), fall back to
#     scripts/audit_pypi.py, which reads the project JSON API: exact advisories for packages at
#     their latest release, UNAUDITED for older ones.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$root/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "audit: no venv at $VENV (run make install)" >&2; exit 2; }
strict=()
for a in "$@"; do [ "$a" = "--strict" ] && strict=(--strict); done

pip_version="$("$PY" -c 'import importlib.metadata as m; print(m.version("pip"))')"
# The JSON API's base comes from pip itself, so no index host is written here.
api="$("$PY" -c 'from pip._internal.models.index import PyPI; print(PyPI.pypi_url)')"
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$api/pip/$pip_version/json" || true)"
if [ "$code" = "200" ]; then
  if ! "$PY" -m pip_audit --version >/dev/null 2>&1; then
    "$PY" -m pip install -q "pip-audit>=2.7,<3" || { echo "audit: cannot install pip-audit" >&2; exit 2; }
  fi
  echo "audit: pip-audit, vulnerability service pypi" >&2
  # pip-audit audits the environment of the interpreter that runs it: the project's venv.
  exec "$PY" -m pip_audit --vulnerability-service pypi --strict --skip-editable --progress-spinner off \
    --cache-dir "${PIP_AUDIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pip-audit}"
fi
echo "audit: PyPI's per-release JSON API is not served here (HTTP ${code:-none}); using its project API" >&2
exec "$PY" "$root/scripts/audit_pypi.py" ${strict[@]+"${strict[@]}"}
