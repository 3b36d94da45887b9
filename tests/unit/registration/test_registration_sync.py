"""apply_dir: the one YAML directory sync (the worker applies DETECTOR_EXPECTATIONS_DIR with it at start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.registration import RegistrationError, load_dir
from detector.registration.sync import apply_dir
from detector.registration.service import InMemoryRegistrationService

EXAMPLES = Path(__file__).resolve().parents[3] / "config" / "expectations"


async def test_apply_examples_then_restart_is_a_no_op():
    service = InMemoryRegistrationService()
    result = await apply_dir(service, EXAMPLES)
    assert sorted(result.created) == sorted(load_dir(EXAMPLES))
    writes = service.writes
    again = await apply_dir(service, EXAMPLES)
    assert again.created == [] and again.updated == [] and sorted(again.unchanged) == sorted(result.created)
    assert service.writes == writes
    assert service.history("subs-mvp-crm-qa")[0]["who"].startswith("gitops:")


async def test_invalid_file_applies_nothing(tmp_path):
    (tmp_path / "a.yaml").write_text("experiment: a\npopulation: {max_users: 1}\n")
    (tmp_path / "b.yaml").write_text("experiment: b\npopulation: {max_users: many}\n")
    service = InMemoryRegistrationService()
    with pytest.raises(RegistrationError) as info:
        await apply_dir(service, tmp_path)
    assert "b.yaml" in str(info.value) and "population.max_users" in str(info.value)
    assert service.writes == 0


async def test_prune_and_risks(tmp_path):
    (tmp_path / "a.yaml").write_text("experiment: a\npopulation: {allowlist: [x], fraction: 0.9}\n")
    service = InMemoryRegistrationService()
    (await apply_dir(service, tmp_path))
    (tmp_path / "b.yaml").write_text("experiment: b\npopulation: {max_users: 1}\n")
    (tmp_path / "a.yaml").unlink()
    result = await apply_dir(service, tmp_path, prune=True)
    assert result.created == ["b"] and result.deleted == ["a"]
    assert set(service.all()) == {"b"}
    service2 = InMemoryRegistrationService()
    (tmp_path / "a.yaml").write_text("experiment: a\npopulation: {allowlist: [x], fraction: 0.9}\n")
    result = await apply_dir(service2, tmp_path)
    assert [r.code for r in result.risks["a"]] == ["allowlist_with_large_fraction"]
