"""Structured JSON logs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from detector.observability.logging import setup_logging


@pytest.fixture
def log_stream():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if getattr(handler, "_exposure_detector_handler", False):
            root.removeHandler(handler)
    root.setLevel(level)
    assert root.handlers == handlers


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_experiment_and_incident(log_stream):
    log = logging.getLogger("detector.alerts")
    log.info("incident %s opened", "inc-42", extra={"experiment": "subs-mvp-crm-qa", "incident_id": "inc-42"})
    log.debug("not shown")
    (entry,) = lines(log_stream)
    assert entry["level"] == "INFO" and entry["logger"] == "detector.alerts"
    assert entry["msg"] == "incident inc-42 opened"
    assert entry["experiment"] == "subs-mvp-crm-qa" and entry["incident_id"] == "inc-42"
    assert entry["ts"].endswith("Z") and entry["ts"][10] == "T"
    assert set(entry) == {"ts", "level", "logger", "msg", "experiment", "incident_id"}


def test_exception_and_non_json_extras(log_stream):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed", extra={"partition": 3, "obj": object()})
    (entry,) = lines(log_stream)
    assert entry["level"] == "ERROR" and "ValueError: boom" in entry["exc"]
    assert entry["partition"] == 3 and entry["obj"].startswith("<object")


def test_user_ids_redacted_above_debug(log_stream):
    logging.getLogger("x").warning("breach", extra={"user_ids": ["u1", "u2"], "user_id": "u3"})
    (entry,) = lines(log_stream)
    assert entry["user_ids"] == "<redacted: 2>" and entry["user_id"] == "<redacted: 1>"
    assert "u1" not in json.dumps(entry) and "u3" not in json.dumps(entry)


def test_debug_keeps_user_ids():
    stream = io.StringIO()
    handler = setup_logging("DEBUG", stream=stream)
    try:
        logging.getLogger("x").debug("seen", extra={"user_id": "u9"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert json.loads(stream.getvalue())["user_id"] == "u9"


def test_setup_is_idempotent(log_stream):
    root = logging.getLogger()
    before = len(root.handlers)
    stream2 = io.StringIO()
    setup_logging("INFO", stream=stream2)
    assert len(root.handlers) == before
    logging.getLogger("x").info("once")
    assert len(stream2.getvalue().splitlines()) == 1 and log_stream.getvalue() == ""
    setup_logging("INFO", json=False, stream=log_stream)  # let the fixture remove it
    logging.getLogger("x").info("text", extra={"experiment": "e1"})
    assert log_stream.getvalue().rstrip().endswith("text [experiment=e1]")


def test_transient_coordinator_error_is_one_info_line_then_error_if_it_persists(log_stream):
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    from detector.observability.logging import TransientCoordinatorFilter

    log = logging.getLogger("aiokafka.consumer.group_coordinator")
    [f] = [f for f in log.filters if isinstance(f, TransientCoordinatorFilter)]
    now = [100.0]
    f.clock = lambda: now[0]
    for _ in range(3):  # what aiokafka logs while a new group's coordinator is elected
        log.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    got = lines(log_stream)
    assert [(r["level"], r["msg"][:40]) for r in got] == [("INFO", "Kafka group coordinator not available ye")]
    now[0] += 31  # still failing after the grace period: a real problem, at ERROR
    log.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    assert lines(log_stream)[-1]["level"] == "ERROR"
    log.error("Group Coordinator Request failed: %s", "GroupAuthorizationFailed")  # never hidden
    assert lines(log_stream)[-1]["level"] == "ERROR"


def test_rebalance_heartbeat_warning_is_info(log_stream):
    # A worker joining or leaving the group: routine in a fleet (the fleet test shows several per start).
    log = logging.getLogger("aiokafka.consumer.group_coordinator")
    log.warning("Heartbeat failed for group %s because it is rebalancing", "g1")
    log.warning("Heartbeat session expired - marking coordinator dead")  # others stay warnings
    got = lines(log_stream)
    assert [(r["level"], r["msg"]) for r in got] == [
        ("INFO", "Heartbeat failed for group g1 because it is rebalancing"),
        ("WARNING", "Heartbeat session expired - marking coordinator dead")]


def test_partition_leader_election_at_broker_start_is_one_info_line_then_error(log_stream):
    # what `make run` printed right after the broker started: ten ERROR lines in a second
    from aiokafka.errors import NotLeaderForPartitionError

    from detector.observability.logging import TransientLeaderFilter

    log = logging.getLogger("aiokafka.consumer.fetcher")
    [f] = [f for f in log.filters if isinstance(f, TransientLeaderFilter)]
    now = [5.0]
    f.clock = lambda: now[0]
    for _ in range(10):
        log.error("Failed fetch offsets from %s: %s", 1, NotLeaderForPartitionError())
    got = lines(log_stream)
    assert len(got) == 1 and got[0]["level"] == "INFO"
    assert got[0]["msg"].startswith("Kafka partition leaders not elected yet")
    now[0] += 31
    log.error("Failed fetch offsets from %s: %s", 1, NotLeaderForPartitionError())
    assert lines(log_stream)[-1]["level"] == "ERROR"
    log.error("Failed fetch offsets from %s: %s", 1, "TopicAuthorizationFailedError")  # never hidden
    assert lines(log_stream)[-1]["level"] == "ERROR"
