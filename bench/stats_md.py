"""Replace one `## Section` of BENCHMARKS.md (up to the next `## ` heading), creating it if missing."""

from __future__ import annotations

import os

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


def write_section(title: str, body: str, path: str = PATH) -> None:
    head = f"## {title}"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == head), None)
    new = [head, "", *body.rstrip().splitlines(), ""]
    if start is None:
        out = lines + ([""] if lines and lines[-1].strip() else []) + new
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        out = lines[:start] + new + lines[end:]
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
