"""README.md documents every environment variable the detector reads."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented():
    from detector.settings import ENV_PREFIX, FILE_SUFFIX, FromFile, Settings

    names = set()
    for name, field in Settings.model_fields.items():  # every field is a variable
        names.add(field.validation_alias or f"{ENV_PREFIX}{name.upper()}")
        if any(isinstance(m, FromFile) for m in field.metadata):
            names.add(f"{ENV_PREFIX}{name.upper()}{FILE_SUFFIX}")
    for path in (ROOT / "detector").rglob("*.py"):
        names |= set(re.findall(r'"(DETECTOR_[A-Z_]+)"', path.read_text()))
    readme = (ROOT / "README.md").read_text()
    assert names, "no settings found: the scan is broken"
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"settings missing from README.md: {missing}"
