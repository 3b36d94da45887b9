"""The watcher's judgement loop over real files and the real alert lifecycle (no Kafka: the outbox
producer records what would be written). The end-to-end path is tests/e2e/test_flag_config.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson

from detector.alerts.lifecycle import LifecycleConfig
from detector.flags.rule import RULE
from detector.flags.sources import SourceSpec
from detector.flags.watcher import FlagWatcher
from detector.registration.model import parse_registration
from detector.settings import Topics
from detector.shell.outbox import AlertPublisher
from detector.simulate import registrations

FIX = Path(__file__).parent / "fixtures"
QA = "crm-winback-email-qa"


class Recorder:
    """Stands in for the acked producer of the ingest service: records the outbox writes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def send(self, topic, key=None, value=None, **kw):
        self.sent.append((topic, orjson.loads(value)))


def _setup(tmp_path, owned: bool, clock):
    reg = parse_registration(registrations(QA, 5)[0])
    pub = AlertPublisher(LifecycleConfig(group_wait_ms=0), {QA: reg}.get, Topics("t."))
    pub.producer = Recorder()
    w = FlagWatcher([SourceSpec("flagd", "flagd", str(tmp_path))], registrations=lambda: {QA: reg},
                    owner_of=lambda e: 0 if owned else None, publisher=pub, lock=asyncio.Lock(), clock=clock)
    return w, pub


def _pages(pub):
    return [v for t, v in pub.producer.sent if t == "t.exposure.alerts"]


def test_only_the_owner_pages_operator_resolution_holds_outages_change_nothing(tmp_path):
    doc = json.loads((FIX / "flagd_flags.json").read_text())
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(doc))
    now = [1_000.0]
    owner, pub = _setup(tmp_path, True, lambda: now[0])
    other, other_pub = _setup(tmp_path, False, lambda: now[0])

    async def tick(dt=1.0):
        now[0] += dt
        for w, p in ((owner, pub), (other, other_pub)):
            await w.poll_all()
            await w.judge(now[0])
            await p.tick(now[0])

    async def run():
        await tick()
        assert owner.verdicts[QA]["state"] == "within" and not _pages(pub)
        bad = json.loads(json.dumps(doc))
        bad["flags"][QA]["targeting"] = {"fractional": [["control", 50], ["treatment", 50]]}
        path.write_text(json.dumps(bad))
        for _ in range(5):
            await tick()
        firing = [p for p in _pages(pub) if p["status"] == "firing"]
        assert len(firing) == 1 and firing[0]["rule"] == RULE and firing[0]["first_offending_event_at"] == 1_002_000
        assert other.verdicts[QA]["state"] == "exceeds" and not _pages(other_pub)  # judged, not fed
        # Kept alive past the quiet period while the configuration stays wrong.
        for _ in range(4):
            await tick(120.0)
        assert pub.lifecycle(0).open_incident(QA, RULE) is not None
        # An unreadable source keeps the last configuration: nothing resolves, nothing new pages.
        path.write_text('{"flags": {')  # half-written
        n = len(_pages(pub))
        await tick()
        assert "invalid document" in owner.states["flagd"].error and owner.states["flagd"].view()["status"] == "unreachable"
        assert pub.lifecycle(0).open_incident(QA, RULE) is not None and len(_pages(pub)) == n
        # An operator resolves it; the same configuration does not reopen it.
        path.write_text(json.dumps(bad))
        inc = pub.lifecycle(0).open_incident(QA, RULE)
        await pub.resolve(inc.id, "alice", now[0])
        n = len(_pages(pub))
        for _ in range(3):
            await tick()
        assert pub.lifecycle(0).open_incident(QA, RULE) is None and len(_pages(pub)) == n
        # A new wrong configuration opens a new incident; the fix resolves it.
        bad["flags"][QA]["targeting"] = {"fractional": [["control", 20], ["treatment", 80]]}
        path.write_text(json.dumps(bad))
        await tick()
        inc2 = pub.lifecycle(0).open_incident(QA, RULE)
        assert inc2 is not None and inc2.id != inc.id and "split differs" in " ".join(inc2.observed["reasons"])
        # "Cannot tell" proves nothing: it does not resolve either.
        bad["flags"][QA]["targeting"] = {"geo_within": [{"var": "location"}, "EU"]}
        path.write_text(json.dumps(bad))
        await tick()
        assert pub.lifecycle(0).open_incident(QA, RULE) is not None and owner.verdicts[QA]["state"] == "cannot_tell"
        path.write_text(json.dumps(doc))
        await tick()
        assert pub.lifecycle(0).open_incident(QA, RULE) is None
        resolved = [p for p in _pages(pub) if p["status"] == "resolved" and p["incident_id"] == inc2.id]
        assert len(resolved) == 1 and resolved[0]["resolved_by"] == "configuration_fixed"
        kinds = [e.kind for e in pub.lifecycle(0).incident(inc2.id).timeline]
        assert kinds[:2] == ["configuration_changed", "detection"], kinds
        assert kinds[-3:] == ["configuration_changed", "resolution", "notification_queued"], kinds

    asyncio.run(run())
