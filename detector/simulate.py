"""`detector simulate incident`: the incident behind this project, replayed into Kafka in ~15 s.

The story (what a new user watches happen):

  1. Four experiments are registered: a QA experiment meant for 5 allowlisted test
     accounts (`allowlist` + `max_users: 5`), and three healthy ones around it (a 10%
     checkout rollout, a Brazil/Portugal mobile-only search test, a 5% pricing test).
  2. Normal traffic: real users visit, the SDK evaluates all four flags. Only the QA
     accounts are enrolled in the QA experiment. Nothing alerts.
  3. Someone changes the QA flag's rollout to 100% of users. Every visitor is now
     enrolled: the detector opens `allowlist_breach` and `max_users_exceeded` incidents
     and pages within about a second.
  4. After `--others` (default 250) real users are enrolled, the flag is rolled back.
     The blast radius is exactly those users: `detector blast-radius EXPERIMENT`.

Registrations go first, to `exposure.expectations` (the same record the API and CLI write)
or, with `--via-api`, through `PUT /v1/expectations/{experiment}` on `--url`. The
simulation then waits until the worker at `--url` shows every registration (so nothing
fires `unregistered`), or 3 s if no worker answers there.

    detector simulate incident [--bootstrap HOST:PORT] [--prefix PREFIX] [--url URL] [--via-api]
                               [--qa-users 5] [--others 250] [--rate 150] [--seed 7] [--json]
    detector simulate receiver [--port 8765]    # a webhook receiver that prints each page
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from detector.settings import Settings, env_default, worker_url_default

QA_EXPERIMENT = "crm-winback-email-qa"
COUNTRIES = (("US", 30), ("BR", 18), ("DE", 12), ("PT", 6), ("IN", 14), ("GB", 10), ("FR", 10))
PLATFORMS = (("ios", 35), ("android", 40), ("web", 25))


def registrations(experiment: str = QA_EXPERIMENT, qa_users: int = 5) -> list[dict[str, Any]]:
    """The four registrations of the scenario, QA experiment first."""
    return [
        {
            "experiment": experiment,
            "owner": "crm",
            "description": f"QA of the win-back email flow in production: {qa_users} test accounts, nobody else",
            "population": {"allowlist": qa_accounts(qa_users), "max_users": qa_users},
            "variants": {"control": 0.5, "treatment": 0.5},
            "severity": "critical",
            "labels": {"team": "crm"},
        },
        {
            "experiment": "checkout-express-pay",
            "owner": "checkout",
            "description": "Express pay button for 10% of eligible traffic, A/B",
            "population": {"fraction": 0.10},
            "variants": {"control": 0.5, "treatment": 0.5},
            "tolerance": 0.2,
            "severity": "error",
        },
        {
            "experiment": "search-ranker-v3-br",
            "owner": "search",
            "description": "New ranking model, mobile apps in Brazil and Portugal only",
            "population": {"segments": {"country": ["BR", "PT"], "platform": ["ios", "android"]}},
            "variants": {"control": 0.5, "ranker-v3": 0.5},
            "severity": "warning",
        },
        {
            "experiment": "pricing-annual-banner",
            "owner": "pricing",
            "description": "Annual plan banner, 5% of eligible traffic, capped at 50k users",
            "population": {"fraction": 0.05, "max_users": 50000},
            "tolerance": 0.2,
            "severity": "error",
        },
    ]


def qa_accounts(n: int) -> list[str]:
    return [f"qa-{i:03d}" for i in range(1, n + 1)]


def _bucket(user: str, salt: str, n: int = 1000) -> int:
    return int.from_bytes(hashlib.blake2b(f"{salt}:{user}".encode(), digest_size=8).digest(), "big") % n


def _pick(rng: random.Random, weighted) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


@dataclass
class Scenario:
    """What the simulation did: ground truth for the walkthrough and the end-to-end test."""

    experiment: str
    allowlist: list[str]
    offenders: list[str] = field(default_factory=list)  # enrolled out of target, in order
    healthy: list[str] = field(default_factory=list)
    misconfigured_at: float | None = None  # epoch s
    first_offending_sent_at: float | None = None  # epoch s, just before the produce call
    first_offending_acked_at: float | None = None  # epoch s, after the broker acknowledged it
    rolled_back_at: float | None = None
    events: int = 0
    registered_via: str = "kafka"
    registrations_seen_by_worker: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Population:
    """Real users with a country and a platform; visitors are drawn with repeats."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng = rng
        ids: set[str] = set()
        while len(ids) < size:
            ids.add(f"u-{rng.randrange(10**7, 10**8)}")
        self.users = sorted(ids)
        rng.shuffle(self.users)
        self.attrs = {u: {"country": _pick(rng, COUNTRIES), "platform": _pick(rng, PLATFORMS)} for u in self.users}
        self.fresh = 0  # next never-seen user

    def visitor(self) -> str:
        # Half the visits are from users seen before, half from new ones (a growing audience).
        if self.fresh < len(self.users) and (self.fresh == 0 or self.rng.random() < 0.5):
            self.fresh += 1
            return self.users[self.fresh - 1]
        return self.users[self.rng.randrange(max(1, self.fresh))]


def _healthy_events(user: str, attrs: dict[str, str], ts: int) -> list[dict[str, Any]]:
    out = []
    # checkout-express-pay: ~8% of eligible traffic enrolled (declared 10%), 50/50
    b = _bucket(user, "checkout-express-pay")
    enrolled = b < 80
    out.append({"experiment": "checkout-express-pay", "user_id": user, "enrolled": enrolled,
                "variant": ("control" if b % 2 else "treatment") if enrolled else None, "ts": ts, "attributes": attrs})
    # search-ranker-v3-br: targeting keeps it to BR/PT mobile
    if attrs["country"] in ("BR", "PT") and attrs["platform"] in ("ios", "android"):
        v = "control" if _bucket(user, "search-ranker-v3-br") % 2 else "ranker-v3"
        out.append({"experiment": "search-ranker-v3-br", "user_id": user, "variant": v, "ts": ts, "attributes": attrs})
    # pricing-annual-banner: ~3% of eligible traffic (declared 5%)
    enrolled = _bucket(user, "pricing-annual-banner") < 30
    out.append({"experiment": "pricing-annual-banner", "user_id": user, "enrolled": enrolled,
                "variant": "banner" if enrolled else None, "ts": ts, "attributes": attrs})
    return out


# ------------------------------------------------------------------------------------ registration
def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def register_via_kafka(producer, topic: str, docs: list[dict[str, Any]]) -> None:
    from detector.registration.model import parse_registration
    from detector.registration.records import encode_record

    for doc in docs:
        e = parse_registration(doc)
        producer.send(topic, key=e.experiment.encode(), value=encode_record(e, "simulate", "cli"))
    producer.flush()


def register_via_api(url: str, token: str, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        code, body = _http(
            "PUT", f"{url.rstrip('/')}/v1/expectations/{doc['experiment']}?confirm=true", json.dumps(doc).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}", "X-Detector-User": "simulate"},
        )
        if code not in (200, 201):
            raise RuntimeError(f"PUT /v1/expectations/{doc['experiment']} answered {code}: {body[:300]!r}")


def wait_registered(url: str, experiments: list[str], timeout: float = 30.0, token: str | None = None) -> bool:
    """True once the worker at `url` serves every registration; False if nobody answers there."""
    deadline = time.time() + timeout
    base = url.rstrip("/")
    if _http("GET", f"{base}/healthz", timeout=2)[0] != 200:
        return False
    pending = list(experiments)
    auth = {"Authorization": f"Bearer {token}"} if token else {}  # reads need the `read` scope
    while pending and time.time() < deadline:
        codes = {e: _http("GET", f"{base}/v1/expectations/{e}", headers=auth)[0] for e in pending}
        if set(codes.values()) & {401, 403}:
            return False  # no token that may read: cannot tell (the caller waits a little instead)
        # 503: the worker is not ready yet, or its group is rebalancing (Retry-After): ask again
        pending = [e for e, code in codes.items() if code != 200]
        if pending:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"the worker at {url} did not show the registrations of {pending} within {timeout:.0f} s")
    return True


# ------------------------------------------------------------------------------------ the run
def run_incident(
    *,
    bootstrap: str,
    prefix: str = "",
    url: str | None = None,
    via_api: bool = False,
    token: str | None = None,
    partitions: int | None = None,
    experiment: str = QA_EXPERIMENT,
    qa_users: int = 5,
    others: int = 250,
    rate: float = 150.0,
    warmup_s: float = 2.0,
    tail_s: float = 1.0,
    seed: int = 7,
    say: Callable[[str], None] = print,
) -> Scenario:
    """Register, then produce the scenario into `{prefix}exposure.assignments`; returns the ground truth."""
    import asyncio

    from kafka import KafkaProducer

    from detector.topics import ensure_topics

    kw: dict[str, Any] = {"kafka_bootstrap": bootstrap, "topic_prefix": prefix}
    if partitions:
        kw["partitions"] = partitions
    settings = Settings(**kw)
    topics = settings.topics
    asyncio.run(ensure_topics(settings))  # creates only what is missing (the broker may forbid auto-creation)

    docs = registrations(experiment, qa_users)
    sc = Scenario(experiment=experiment, allowlist=qa_accounts(qa_users), healthy=[d["experiment"] for d in docs[1:]])
    producer = KafkaProducer(**settings.kafka.client_kwargs(), acks="all", linger_ms=5)
    t_start = time.time()

    def clock() -> str:
        return f"[{time.time() - t_start:5.1f}s]"

    try:
        if via_api:
            if not url or not token:
                raise RuntimeError("--via-api needs --url and a token (--token or DETECTOR_API_TOKEN)")
            register_via_api(url, token, docs)
            sc.registered_via = "api"
        else:
            register_via_kafka(producer, topics.expectations, docs)
        say(f"{clock()} registered {experiment} (allowlist of {qa_users} QA accounts, max_users {qa_users}) "
            f"and {', '.join(sc.healthy)} via {sc.registered_via}")
        if url:
            sc.registrations_seen_by_worker = wait_registered(url, [d["experiment"] for d in docs], token=token)
        if not sc.registrations_seen_by_worker:
            say(f"{clock()} no worker answering at {url}: giving the registrations 3 s to be read")
            time.sleep(3.0)

        rng = random.Random(seed)
        pop = _Population(rng, max(4 * others, 2000))
        qa = set(sc.allowlist)
        offenders: list[str] = []
        offenders_set: set[str] = set()
        phase = "healthy"
        tick = 0.05
        per_tick = max(1, round(rate * tick))
        t_phase = time.time()
        say(f"{clock()} normal traffic: ~{rate:.0f} visits/s; only the QA accounts enrolled in {experiment}")

        def send(ev: dict[str, Any]) -> None:
            producer.send(topics.assignments, key=ev["experiment"].encode(), value=json.dumps(ev).encode())
            sc.events += 1

        # The QA accounts test the flow first: the in-target enrollments.
        now_ms = int(time.time() * 1000)
        for u in sc.allowlist:
            v = "control" if _bucket(u, experiment) % 2 else "treatment"
            send({"experiment": experiment, "user_id": u, "variant": v, "ts": now_ms,
                  "attributes": {"country": "US", "platform": "web", "account": "test"}})
        producer.flush()

        while True:
            t0 = time.time()
            if phase == "healthy" and t0 - t_phase >= warmup_s:
                phase = "misconfigured"
                sc.misconfigured_at = t0
                say(f"{clock()} !! someone sets the rollout of {experiment} to 100% of users")
            elif phase == "rolled_back" and t0 - t_phase >= tail_s:
                break
            for _ in range(per_tick):
                user = pop.visitor()
                attrs = pop.attrs[user]
                ts = int(time.time() * 1000)
                for ev in _healthy_events(user, attrs, ts):
                    send(ev)
                if phase == "misconfigured" and user not in qa:
                    v = "control" if _bucket(user, experiment) % 2 else "treatment"
                    ev = {"experiment": experiment, "user_id": user, "variant": v, "ts": ts, "attributes": attrs}
                    if not offenders:
                        sc.first_offending_sent_at = time.time()
                        send(ev)
                        producer.flush()
                        sc.first_offending_acked_at = time.time()
                        say(f"{clock()} first out-of-target enrollment: {user} ({v})")
                    else:
                        send(ev)
                    if user not in offenders_set:
                        offenders_set.add(user)
                        offenders.append(user)
                    if len(offenders) >= others:
                        phase = "rolled_back"
                        t_phase = sc.rolled_back_at = time.time()
                        producer.flush()
                        say(f"{clock()} the flag owner rolls {experiment} back: {len(offenders)} real users "
                            "were enrolled out of target")
                        break
            # A QA account comes back now and then (in target).
            if rng.random() < 0.1:
                u = rng.choice(sc.allowlist)
                send({"experiment": experiment, "user_id": u, "variant": "control" if _bucket(u, experiment) % 2 else "treatment",
                      "ts": int(time.time() * 1000), "attributes": {"country": "US", "platform": "web", "account": "test"}})
            producer.flush()
            time.sleep(max(0.0, tick - (time.time() - t0)))
        producer.flush()
        sc.offenders = offenders
        say(f"{clock()} done: {sc.events} assignment events produced to {topics.assignments}")
        return sc
    finally:
        producer.close()


def _next_steps(sc: Scenario, url: str) -> str:
    u = url.rstrip("/")
    return "\n".join([
        "",
        "What to look at now:",
        f"  curl -s {u}/v1/incidents | python3 -m json.tool           # two incidents, firing",
        f"  curl -s '{u}/v1/incidents/<id>?format=md'                  # the timeline, for the post-mortem",
        f"  detector blast-radius {sc.experiment} --format csv --url {u} > affected.csv   # {len(sc.offenders)} users",
        f"  curl -s -X POST -H \"Authorization: Bearer $DETECTOR_API_TOKEN\" -H 'X-Detector-User: you' "
        f"{u}/v1/incidents/<id>/ack",
    ])


def serve_receiver(host: str, port: int, say: Callable[[str], None] = print) -> None:
    """A webhook receiver for demos: prints one line per notification it gets (any path, answers 200)."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        stamp = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        if isinstance(body, dict) and body.get("schema") == "exposure-alert/v1":
            br = (body.get("blast_radius") or {}).get("count")
            say(f"{stamp} {str(body.get('status')).upper():8} {body.get('severity')} {body.get('rule')} "
                f"in {body.get('experiment')}: {body.get('summary')} (blast radius {br}; incident {body.get('incident_id')})")
        else:
            say(f"{stamp} {request.method} {request.path}: {raw[:200]!r}")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    say(f"listening on http://{host}:{port}/hook: set DETECTOR_WEBHOOK_URLS=http://{host}:{port}/hook on the worker")
    web.run_app(app, host=host, port=port, print=None)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "receiver":
        rp = argparse.ArgumentParser(prog="detector simulate receiver",
                                     description="A local webhook receiver that prints every notification.")
        rp.add_argument("--host", default="127.0.0.1")
        rp.add_argument("--port", type=int, default=8765)
        a = rp.parse_args(argv[1:])
        try:
            serve_receiver(a.host, a.port, lambda m: print(m, flush=True))
        except OSError as exc:
            print(f"detector simulate receiver: cannot listen on {a.host}:{a.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        return 0
    parser = argparse.ArgumentParser(prog="detector simulate", description="Produce a realistic scenario into Kafka.")
    parser.add_argument("scenario", choices=["incident"],
                        help="incident: a QA experiment misconfigured to 100%%. (Also: `detector simulate receiver`, "
                             "a webhook receiver that prints notifications.)")
    parser.add_argument("--bootstrap", default=env_default("DETECTOR_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                        help="Kafka bootstrap servers (default DETECTOR_KAFKA_BOOTSTRAP or 127.0.0.1:9092)")
    parser.add_argument("--prefix", default=env_default("DETECTOR_TOPIC_PREFIX", ""),
                        help="topic prefix of the detector deployment (default DETECTOR_TOPIC_PREFIX)")
    parser.add_argument("--url", default=worker_url_default(),
                        help="worker API, to wait for the registrations to be read (default DETECTOR_URL or %(default)s)")
    parser.add_argument("--via-api", action="store_true", help="register through PUT /v1/expectations on --url")
    parser.add_argument("--token", default=env_default("DETECTOR_API_TOKEN"), help="API token for --via-api")
    parser.add_argument("--experiment", default=QA_EXPERIMENT)
    parser.add_argument("--qa-users", type=int, default=5, help="allowlisted QA accounts (default 5)")
    parser.add_argument("--others", type=int, default=250, help="real users enrolled by mistake (default 250)")
    parser.add_argument("--rate", type=float, default=150.0, help="visits per second (default 150)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of healthy traffic first (default 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the ground truth as JSON at the end")
    args = parser.parse_args(argv)
    if args.qa_users < 1 or args.others < 1 or args.rate <= 0:
        print("detector simulate: --qa-users, --others and --rate must be positive", file=sys.stderr)
        return 2
    say = (lambda m: print(m, file=sys.stderr)) if args.json else print
    try:
        sc = run_incident(
            bootstrap=args.bootstrap, prefix=args.prefix, url=args.url, via_api=args.via_api, token=args.token,
            experiment=args.experiment, qa_users=args.qa_users, others=args.others, rate=args.rate,
            warmup_s=args.warmup, seed=args.seed, say=say,
        )
    except Exception as exc:
        print(f"detector simulate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(sc.to_dict()))
    else:
        print(_next_steps(sc, args.url))
    return 0
