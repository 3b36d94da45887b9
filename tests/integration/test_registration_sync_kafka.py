"""The worker's start-up YAML sync on the real broker: only changes are written, risks are
reported, and registrations absent from the directory are deleted only with prune."""

from __future__ import annotations

import asyncio

import pytest

from detector.registration.store import read_registrations
from detector.registration.sync import sync_dir
from detector.settings import Settings
from detector.topics import ensure_topics

pytestmark = pytest.mark.kafka


def _settings(ns, directory, prune=False) -> Settings:
    from harness import BOOTSTRAP

    return Settings(kafka_bootstrap=BOOTSTRAP, topic_prefix=ns.prefix, app_id=ns.app_id, partitions=ns.partitions,
                    expectations_dir=str(directory), expectations_prune=prune)


def test_start_up_sync_writes_changes_reports_risks_and_prunes_only_when_asked(ns, tmp_path):
    (tmp_path / "a.yaml").write_text("experiment: a\npopulation: {max_users: 1}\n")
    (tmp_path / "b.yaml").write_text("experiment: b\npopulation: {allowlist: [x], fraction: 0.9}\n")
    s = _settings(ns, tmp_path)
    asyncio.run(ensure_topics(s))
    first = asyncio.run(sync_dir(s))
    assert first is not None and first.created == ["a", "b"]
    assert [r.code for r in first.risks["b"]] == ["allowlist_with_large_fraction"]
    again = asyncio.run(sync_dir(s))
    assert again is not None and again.created == again.updated == [] and again.unchanged == ["a", "b"]

    (tmp_path / "b.yaml").unlink()
    kept = asyncio.run(sync_dir(s))
    assert kept is not None and kept.deleted == []
    assert set(asyncio.run(read_registrations(s.kafka_bootstrap, s.topics.expectations))) == {"a", "b"}

    pruned = asyncio.run(sync_dir(_settings(ns, tmp_path, prune=True)))
    assert pruned is not None and pruned.deleted == ["b"]
    assert set(asyncio.run(read_registrations(s.kafka_bootstrap, s.topics.expectations))) == {"a"}
