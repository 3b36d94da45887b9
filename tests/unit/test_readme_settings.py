"""README.md documents every environment variable the detector reads."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented():
    names = set()
    for path in (ROOT / "detector").rglob("*.py"):
        names |= set(re.findall(r'"(DETECTOR_[A-Z_]+)"', path.read_text()))
    readme = (ROOT / "README.md").read_text()
    assert names, "no settings found: the scan is broken"
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"settings missing from README.md: {missing}"
