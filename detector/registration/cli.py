"""`detector register | registrations | sync`: registrations from the command line.

    detector register FILE|DIR... [--dry-run] [--confirm] [--url URL] [--token T] [--user WHO]
    detector sync DIR [--dry-run] [--confirm] [--prune] [--url URL] [--token T] [--user WHO]
    detector registrations list [--json]
    detector registrations show EXP [--json]
    detector registrations status EXP            (declaration vs observation, JSON)
    detector registrations history EXP [--json]
    detector registrations delete EXP [--dry-run] [--confirm]
    detector registrations validate FILE|DIR...  (local only, no worker needed)

`detector expectations ...` is the same command under its historical name.

Files are validated locally first, with the same parser the worker uses, so a bad file fails
(exit 1) without a server. `register` and `sync` then work in two phases: a dry run of every
registration on the worker (which validates again and assesses risks against live traffic), and
only if all of them pass, the writes. So a directory is never half-applied because one file in
it was risky or invalid.

The worker is `--url`, else `$DETECTOR_URL`, else http://127.0.0.1:6066; the token is `--token`,
else `$DETECTOR_API_TOKEN`.

Exit codes: 0 ok; 1 invalid registration (locally or per the worker) or not found; 2 usage;
3 needs confirmation (repeat with --confirm after reading the risks); 4 the worker could not be
reached, refused the token, or failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from detector.settings import env_default, worker_url_default
from detector.registration.errors import RegistrationError
from detector.registration.files import load_path
from detector.registration.model import registration_to_dict, valid_experiment_key

MULTI_COMMAND = True

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_CONFIRM, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
DEFAULT_URL = "http://127.0.0.1:6066"
TIMEOUT_S = 15.0


class _Usage(Exception):
    def __init__(self, message: str, printed: bool = False):
        super().__init__(message)
        self.printed = printed


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _Usage(message, printed=True)


@dataclass
class _Reply:
    status: int
    body: Any


class _Unavailable(Exception):
    pass


class Client:
    """Minimal JSON client for the worker API (stdlib only)."""

    def __init__(self, url: str, token: str | None, user: str | None = None, timeout: float = TIMEOUT_S):
        self.url, self.token, self.user, self.timeout = url.rstrip("/"), token, user, timeout

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, bool] | None = None) -> _Reply:
        url = self.url + path
        flags = {k: "true" for k, v in (query or {}).items() if v}
        if flags:
            url += "?" + urllib.parse.urlencode(flags)
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:  # reads need a token too (the `read` scope)
            req.add_header("Authorization", f"Bearer {self.token}")
        if self.user:
            req.add_header("X-Detector-User", self.user)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only
                return _Reply(resp.status, _decode(resp.read()))
        except urllib.error.HTTPError as exc:
            return _Reply(exc.code, _decode(exc.read()))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Unavailable(f"cannot reach the worker at {self.url}: {reason}") from None

    def list_all(self) -> _Reply:
        """GET /v1/expectations, every page (the list is paged by experiment key)."""
        items: list[Any] = []
        path = "/v1/expectations?limit=1000"
        while True:
            reply = self.request("GET", path)
            if reply.status != 200 or not isinstance(reply.body, dict):
                return reply
            items += reply.body.get("expectations", [])
            if not reply.body.get("next"):
                return _Reply(200, {**reply.body, "expectations": items, "count": len(items)})
            path = reply.body["next"]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return {"error": raw[:500].decode("utf-8", "replace")}


def _exp_path(experiment: str) -> str:
    return "/v1/expectations/" + urllib.parse.quote(experiment, safe="")


# ------------------------------------------------------------------------------------ printing
def _print_errors(reply_body: Any, out: TextIO, prefix: str = "") -> None:
    body = reply_body if isinstance(reply_body, dict) else {}
    print(f"{prefix}{body.get('error', 'request failed')}", file=out)
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            code = f" [{err['code']}]" if err.get("code") else ""
            print(f"{prefix}  {err.get('field')}: {err.get('message')}{code}", file=out)


def _fmt(value: Any) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _print_diff(changes: list[dict[str, Any]], out: TextIO) -> None:
    for change in changes:
        line = f"    {change['field']}: {_fmt(change.get('old'))} -> {_fmt(change.get('new'))}"
        if "added_count" in change:
            line += f" (+{change['added_count']} -{change['removed_count']})"
        print(line, file=out)


def _status_exit(status: int) -> int:
    if status == 409:
        return EXIT_CONFIRM
    if status in (401, 403, 503) or status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_INVALID


def _worst(codes: list[int]) -> int:
    for code in (EXIT_UNAVAILABLE, EXIT_INVALID, EXIT_CONFIRM):
        if code in codes:
            return code
    return EXIT_OK


# ------------------------------------------------------------------------------------ commands
def _load(paths: list[str]) -> dict[str, Any]:
    """Validate every path locally; raise RegistrationError listing all problems."""
    out: dict[str, Any] = {}
    errors = []
    for path in paths:
        if not os.path.exists(path):
            errors.append(f"{path}: no such file or directory")
            continue
        try:
            found = load_path(path)
        except RegistrationError as exc:
            errors += [str(e) for e in exc.errors]
            continue
        for name, exp in found.items():
            if name in out:
                errors.append(f"{path}: experiment {name!r} is registered more than once")
            out[name] = exp
    if errors:
        raise _LocalInvalid(errors)
    return out


class _LocalInvalid(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def _push(
    client: Client,
    registrations: dict[str, Any],
    *,
    dry_run: bool,
    confirm: bool,
    prune: list[str] | None = None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Dry-run everything, then (unless --dry-run or a problem) write everything."""
    names = sorted(registrations)
    prune = sorted(prune or [])
    codes: list[int] = []
    planned: list[tuple[str, str]] = []  # (kind, experiment)
    for name in names:
        reply = client.request(
            "PUT", _exp_path(name), body=registration_to_dict(registrations[name]),
            query={"dry_run": True, "confirm": confirm},
        )
        if reply.status != 200:
            _print_errors(reply.body, err, prefix=f"{name}: ")
            codes.append(_status_exit(reply.status))
            continue
        body = reply.body
        verb = {"create": "create", "update": "update", "unchanged": "leave unchanged"}[body["action"]]
        print(f"{name}: {'would ' if dry_run else 'will '}{verb}"
              f" (rules: {', '.join(body.get('active_rules') or []) or 'none'})", file=out)
        _print_diff(body.get("diff") or [], out)
        for risk in body.get("risks") or []:
            print(f"    risk [{risk['code']}] {risk['message']}", file=err if body["requires_confirmation"] else out)
        if body["requires_confirmation"]:
            print(f"{name}: needs confirmation; repeat with --confirm after reviewing the risks above", file=err)
            codes.append(EXIT_CONFIRM)
        elif body["action"] != "unchanged":
            planned.append(("put", name))
    for name in prune:
        reply = client.request("DELETE", _exp_path(name), query={"dry_run": True, "confirm": confirm})
        if reply.status != 200:
            _print_errors(reply.body, err, prefix=f"{name}: ")
            codes.append(_status_exit(reply.status))
            continue
        print(f"{name}: {'would ' if dry_run else 'will '}delete (not in the directory)", file=out)
        for risk in reply.body.get("risks") or []:
            print(f"    risk [{risk['code']}] {risk['message']}", file=err)
        if reply.body["requires_confirmation"]:
            print(f"{name}: deleting needs confirmation; repeat with --confirm", file=err)
            codes.append(EXIT_CONFIRM)
        else:
            planned.append(("delete", name))
    if codes:
        print("nothing was written" if not dry_run else "dry run found problems", file=err)
        return _worst(codes)
    if dry_run:
        return EXIT_OK
    for kind, name in planned:
        if kind == "put":
            reply = client.request("PUT", _exp_path(name), body=registration_to_dict(registrations[name]),
                                   query={"confirm": confirm})
        else:
            reply = client.request("DELETE", _exp_path(name), query={"confirm": confirm})
        if reply.status in (200, 201):
            print(f"{name}: {reply.body.get('action', kind)}d", file=out)
        else:
            _print_errors(reply.body, err, prefix=f"{name}: ")
            codes.append(_status_exit(reply.status))
    return _worst(codes)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=worker_url_default(), help="worker URL (default $DETECTOR_URL or %(default)s)")
    p.add_argument("--token", default=env_default("DETECTOR_API_TOKEN"),
                   help="API token (default $DETECTOR_API_TOKEN or the file named by $DETECTOR_API_TOKEN_FILE)")
    p.add_argument("--user", default=env_default("USER"), help="who makes the change, for the history (default $USER)")


def _client(args: argparse.Namespace) -> Client:
    url = args.url or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise _Usage(f"--url must be an http(s) URL, got {url!r}")
    token = args.token or None
    user = args.user or None
    return Client(url, token, user)


def _cmd_register(argv: list[str], out: TextIO, err: TextIO, *, sync: bool) -> int:
    prog = "detector sync" if sync else "detector register"
    p = _Parser(prog=prog, description=(
        "Push every registration in DIR; --prune also deletes registrations absent from it." if sync
        else "Push registrations from YAML files or directories."))
    if sync:
        p.add_argument("paths", nargs=1, metavar="DIR")
        p.add_argument("--prune", action="store_true", help="delete registrations that are not in DIR")
    else:
        p.add_argument("paths", nargs="+", metavar="FILE|DIR")
    p.add_argument("--dry-run", action="store_true", help="validate on the worker and show the diff; write nothing")
    p.add_argument("--confirm", action="store_true", help="apply changes that carry risks")
    _common(p)
    args = p.parse_args(argv)
    if sync and not os.path.isdir(args.paths[0]):
        raise _Usage(f"{args.paths[0]} is not a directory")
    try:
        registrations = _load(args.paths)
    except _LocalInvalid as exc:
        for line in exc.errors:
            print(line, file=err)
        print(f"invalid: {len(exc.errors)} problem(s); nothing was sent", file=err)
        return EXIT_INVALID
    if not registrations:
        print("no registrations found", file=err)
        return EXIT_INVALID
    client = _client(args)
    prune: list[str] = []
    if sync:
        reply = client.list_all()
        if reply.status != 200:
            _print_errors(reply.body, err)
            return _status_exit(reply.status)
        remote = {e["experiment"] for e in reply.body.get("expectations", [])}
        extra = sorted(remote - set(registrations))
        if args.prune:
            prune = extra
        for name in extra if not args.prune else []:
            print(f"{name}: registered on the worker but not in {args.paths[0]} (kept; --prune deletes it)", file=out)
    return _push(client, registrations, dry_run=args.dry_run, confirm=args.confirm, prune=prune, out=out, err=err)


def _cmd_registrations(argv: list[str], out: TextIO, err: TextIO, prog: str = "detector registrations") -> int:
    p = _Parser(prog=prog, description="Inspect and delete registrations.")
    sub = p.add_subparsers(dest="action", metavar="list|show|status|history|delete|validate")
    sub.required = True
    sp = sub.add_parser("list", help="list registrations")
    sp.add_argument("--json", action="store_true")
    _common(sp)
    for name, help_ in (("show", "one registration (YAML; --json for JSON)"),
                        ("status", "declaration and observation side by side (JSON)"),
                        ("history", "who changed what, when")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("experiment")
        sp.add_argument("--json", action="store_true")
        _common(sp)
    sp = sub.add_parser("delete", help="delete a registration")
    sp.add_argument("experiment")
    sp.add_argument("--dry-run", action="store_true")
    sp.add_argument("--confirm", action="store_true", help="delete even if the experiment receives traffic")
    _common(sp)
    sp = sub.add_parser("validate", help="validate files locally (no worker needed)")
    sp.add_argument("paths", nargs="+", metavar="FILE|DIR")
    args = p.parse_args(argv)

    if args.action == "validate":
        try:
            found = _load(args.paths)
        except _LocalInvalid as exc:
            for line in exc.errors:
                print(line, file=err)
            return EXIT_INVALID
        for name in sorted(found):
            print(f"{name}: ok (rules: {', '.join(found[name].active_rules())})", file=out)
        return EXIT_OK

    experiment: str = getattr(args, "experiment", None) or ""
    if hasattr(args, "experiment") and not valid_experiment_key(experiment):
        print(f"invalid experiment key {experiment!r}", file=err)
        return EXIT_INVALID
    client = _client(args)
    if args.action == "list":
        reply = client.list_all()
        if reply.status != 200:
            _print_errors(reply.body, err)
            return _status_exit(reply.status)
        items = reply.body.get("expectations", [])
        if args.json:
            print(json.dumps(items, indent=2), file=out)
            return EXIT_OK
        print(f"{'EXPERIMENT':<40} {'SEVERITY':<9} {'OWNER':<20} POPULATION", file=out)
        for item in items:
            pop = ", ".join(
                f"{k}={len(v) if k == 'allowlist' else json.dumps(v)}" for k, v in (item.get("population") or {}).items()
            )
            print(f"{item['experiment']:<40} {item.get('severity', ''):<9} {item.get('owner') or '-':<20} {pop or '-'}",
                  file=out)
        return EXIT_OK
    if args.action in ("show", "status", "history"):
        path = {"show": _exp_path(experiment), "history": _exp_path(experiment) + "/history",
                "status": "/v1/experiments/" + urllib.parse.quote(experiment, safe="")}[args.action]
        reply = client.request("GET", path)
        if reply.status != 200:
            _print_errors(reply.body, err)
            return _status_exit(reply.status)
        if args.action == "show" and not args.json:
            print(yaml.safe_dump(reply.body, sort_keys=False, allow_unicode=True), end="", file=out)
        elif args.action == "history" and not args.json:
            for entry in reply.body.get("history", []):
                print(f"{entry['at']}  {entry['who']}  {entry['action']}", file=out)
                _print_diff(entry.get("diff") or [], out)
        else:
            print(json.dumps(reply.body, indent=2), file=out)
        return EXIT_OK
    # delete
    reply = client.request("DELETE", _exp_path(experiment), query={"dry_run": args.dry_run, "confirm": args.confirm})
    if reply.status != 200:
        _print_errors(reply.body, err)
        if reply.status == 409:
            print("repeat with --confirm to delete anyway", file=err)
        return _status_exit(reply.status)
    for risk in reply.body.get("risks") or []:
        print(f"    risk [{risk['code']}] {risk['message']}", file=err)
    if args.dry_run:
        verdict = "needs --confirm" if reply.body.get("requires_confirmation") else "ok"
        print(f"{experiment}: would delete ({verdict})", file=out)
        return EXIT_CONFIRM if reply.body.get("requires_confirmation") else EXIT_OK
    print(f"{experiment}: deleted", file=out)
    return EXIT_OK


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`argv` starts with the command name: register | registrations (or expectations) | sync."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = out or sys.stdout, err or sys.stderr
    if not argv:
        print("usage: detector register|registrations|sync ...", file=err)
        return EXIT_USAGE
    command, rest = argv[0], argv[1:]
    try:
        if command == "register":
            return _cmd_register(rest, out, err, sync=False)
        if command == "sync":
            return _cmd_register(rest, out, err, sync=True)
        if command in ("registrations", "expectations"):
            return _cmd_registrations(rest, out, err, prog=f"detector {command}")
        print(f"unknown command {command!r}: register | registrations | sync", file=err)
        return EXIT_USAGE
    except _Usage as exc:
        if not exc.printed:
            print(f"detector {command}: {exc}", file=err)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    except _Unavailable as exc:
        print(str(exc), file=err)
        return EXIT_UNAVAILABLE
