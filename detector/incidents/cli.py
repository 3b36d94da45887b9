"""`detector blast-radius EXPERIMENT`: the out-of-target users of an experiment, from the worker API.

    detector blast-radius EXPERIMENT [--format csv|json] [--rule RULE] [--as-recorded]
                                     [--url URL] [--output FILE]

CSV (default): a header row `user_id,first_seen_at,variant,rules`, one row per user, ready to
feed a cleanup migration. JSON: `{"experiment", "count", "users": [...], "summary"}`, every page
of `GET /v1/experiments/{experiment}/blast-radius` followed to the end.

Exit codes: 0 ok, 1 the worker refused or is unreachable, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from detector.settings import env_default, worker_url_default

PAGE = 10_000


def _open(url: str, timeout: float, token: str | None = None):
    headers = {"Accept": "*/*", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            msg = json.loads(body).get("error") or body.decode(errors="replace")
            detail = "; ".join(e.get("message", "") for e in json.loads(body).get("errors", []))
            msg = f"{msg} ({detail})" if detail else msg
        except (ValueError, AttributeError):
            msg = body.decode(errors="replace")[:300]
        raise SystemExit(f"detector blast-radius: {err.code} from {url}: {msg}") from None
    except (urllib.error.URLError, OSError) as err:
        raise SystemExit(f"detector blast-radius: cannot reach the worker at {url}: {err}") from None


def fetch_csv(base: str, experiment: str, params: dict[str, str], out, timeout: float = 60,
              token: str | None = None) -> int:
    """Stream the CSV to `out` (binary); returns the number of data rows."""
    q = urllib.parse.urlencode({**params, "format": "csv"})
    url = f"{base}/v1/experiments/{urllib.parse.quote(experiment, safe='')}/blast-radius?{q}"
    rows = -1
    with _open(url, timeout, token) as resp:
        while chunk := resp.read(65536):
            out.write(chunk)
            rows += chunk.count(b"\n")
    return max(rows, 0)


def fetch_json(base: str, experiment: str, params: dict[str, str], timeout: float = 60,
               token: str | None = None) -> dict:
    """Every page, concatenated."""
    users: list[dict] = []
    summary = None
    cursor = None
    while True:
        q = {**params, "limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        url = f"{base}/v1/experiments/{urllib.parse.quote(experiment, safe='')}/blast-radius?{urllib.parse.urlencode(q)}"
        with _open(url, timeout, token) as resp:
            page = json.loads(resp.read())
        summary = summary or page.get("summary")
        users.extend(page.get("users", []))
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return {"experiment": experiment, "rule": params.get("rule"), "count": len(users), "summary": summary, "users": users}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="detector blast-radius",
        description="Out-of-target users of an experiment (enrolled but not on the allowlist, over the cap, "
                    "outside the segments or the window), from the worker's API.",
    )
    parser.add_argument("experiment")
    parser.add_argument("--format", choices=["csv", "json"], default="csv")
    parser.add_argument("--rule", help="only users out of target by this rule, e.g. allowlist_breach")
    parser.add_argument("--as-recorded", action="store_true",
                        help="report the engine's records as they are, not re-judged under the current registration")
    parser.add_argument("--url", default=worker_url_default(), help="worker API (default DETECTOR_URL or %(default)s)")
    parser.add_argument("--output", "-o", help="write here instead of stdout")
    parser.add_argument("--token", default=env_default("DETECTOR_API_TOKEN"),
                        help="API token with the read:users scope (default DETECTOR_API_TOKEN)")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    params: dict[str, str] = {}
    if args.rule:
        params["rule"] = args.rule
    if args.as_recorded:
        params["as_recorded"] = "true"
    base = args.url.rstrip("/")
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    try:
        if args.format == "csv":
            n = fetch_csv(base, args.experiment, params, out, args.timeout, args.token)
        else:
            doc = fetch_json(base, args.experiment, params, args.timeout, args.token)
            n = doc["count"]
            out.write(json.dumps(doc, indent=2).encode() + b"\n")
        out.flush()
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if args.output:
            out.close()
    print(f"{n} user(s) out of target in {args.experiment}", file=sys.stderr)
    return 0
