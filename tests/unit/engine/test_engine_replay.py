"""detector replay: timeline, JSON findings, errors naming the line."""

import io
import json

from detector import replay

YAML = """experiment: qa-exp
owner: qa
starts_at: 2024-01-01T00:00:00Z
population:
  allowlist: [qa-1, qa-2]
  max_users: 2
variants: {control: 0.5, treatment: 0.5}
severity: critical
"""


def _files(tmp_path, lines):
    d = tmp_path / "exp"
    d.mkdir()
    (d / "qa.yaml").write_text(YAML)
    ev = tmp_path / "events.jsonl"
    ev.write_text("\n".join(lines) + "\n")
    return str(ev), str(d)


def _line(user, ts, exp="qa-exp"):
    return json.dumps({"experiment": exp, "user_id": user, "variant": "control", "ts": ts})


def test_replay_json_findings(tmp_path):
    ev, d = _files(tmp_path, [_line("qa-1", "2024-02-01T00:00:00Z"), _line("real-9", "2024-02-01T00:00:05Z"),
                              "", _line("x", 1706745600000, exp="other")])
    out, err = io.StringIO(), io.StringIO()
    assert replay.main([ev, "--expectations", d, "--format", "json", "--batch", "1"], out=out, err=err) == 0
    found = [json.loads(x) for x in out.getvalue().splitlines()]
    rules = {(f["experiment"], f["rule"]) for f in found}
    assert ("qa-exp", "allowlist_breach") in rules and ("other", "unregistered") in rules
    al = next(f for f in found if f["rule"] == "allowlist_breach")
    assert al["first_offending_event_at"] == 1706745605000 == al["detected_at"]
    assert al["sample_ids"] == ["real-9"] and al["expected"]["allowlist"] == ["qa-1", "qa-2"]


def test_replay_text_timeline(tmp_path):
    ev, d = _files(tmp_path, [_line(f"u{i}", 1706745600000 + i) for i in range(5)])
    out, err = io.StringIO(), io.StringIO()
    assert replay.main([ev, "--expectations", d], out=out, err=err) == 0
    text = out.getvalue()
    assert "2024-02-01T00:00:00.000Z -> 2024-02-01T00:00:00.000Z" in text
    assert "allowlist_breach" in text and "max_users_exceeded" in text
    assert "allowlist_breach=firing" in text


def test_replay_malformed_line_exits_1_naming_the_line(tmp_path):
    ev, d = _files(tmp_path, [_line("qa-1", 0), "{not json", _line("qa-2", 0)])
    out, err = io.StringIO(), io.StringIO()
    assert replay.main([ev, "--expectations", d], out=out, err=err) == 1
    assert ":2:" in err.getvalue()


def test_replay_missing_file_and_usage(tmp_path):
    err = io.StringIO()
    assert replay.main([str(tmp_path / "nope.jsonl")], out=io.StringIO(), err=err) == 1
    assert "cannot open" in err.getvalue()
    assert replay.main([], out=io.StringIO(), err=io.StringIO()) == 2
