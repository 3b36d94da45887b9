"""The worker on the real broker: it starts, answers health checks, consumes, and alerts."""

from __future__ import annotations

from harness import BOOTSTRAP, now_ms, wait_until


def test_kafka_admin_can_create_a_topic(kafka, ns):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    name = ns.topic("smoke")
    admin.create_topics([NewTopic(name, 2, 1)])
    try:
        # create_topics answers once the controller accepted it; a broker's metadata may lag a moment
        wait_until(lambda: name in admin.list_topics(), timeout=10, what="the new topic in the metadata")
    finally:
        admin.delete_topics([name])
        admin.close()


def test_unregistered_experiment_posts_alert(workers, producer, receiver, ns):
    w = workers(env={"DETECTOR_WEBHOOK_URLS": receiver.url})
    code, body = w.get("/healthz")
    assert code == 200 and body["status"] == "ok"
    t0 = now_ms()
    producer.send_events(
        {"experiment": "ghost-exp", "user_id": f"u{i}", "variant": "b", "ts": t0} for i in range(3)
    )
    [alert] = receiver.wait_for(lambda b: b.get("rule") == "unregistered", timeout=20)
    assert alert["schema"] == "exposure-alert/v1"
    assert alert["experiment"] == "ghost-exp"
    assert alert["status"] == "firing"
    assert alert["blast_radius"]["count"] == 3
    # Signed and identified the Standard Webhooks way.
    req = receiver.requests[0]
    assert req["headers"]["webhook-id"] == alert["id"]


def test_malformed_events_go_to_dead_letter_and_good_ones_still_count(workers, producer, receiver, ns):
    from kafka import KafkaConsumer

    w = workers(env={"DETECTOR_WEBHOOK_URLS": receiver.url})
    producer.send_raw(b"{not json", key=b"bad-exp")
    producer.send_events([{"experiment": "ghost-2", "user_id": "u1", "ts": now_ms()}])
    receiver.wait_for(lambda b: b.get("experiment") == "ghost-2", timeout=20)
    consumer = KafkaConsumer(
        ns.topic("exposure.deadletter"), bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest", consumer_timeout_ms=10000,
    )
    got = wait_until(lambda: list(consumer.poll(500).values()), 15, what="dead letter")
    rec = got[0][0]
    assert rec.value == b"{not json"
    assert dict(rec.headers)["kind"] == b"invalid_json"
    consumer.close()
    code, text = w.get("/metrics")
    assert code == 200
    assert 'exposure_detector_dead_lettered_total{reason="invalid_json"} 1.0' in text


def test_metrics_follow_the_stream(workers, producer, ns):
    """Per-experiment series appear for what was consumed, and lag is reported per partition."""
    w = workers()
    producer.send_events({"experiment": "metered", "user_id": f"m{i}", "variant": "a", "ts": now_ms()} for i in range(7))

    def enrolled():
        _, text = w.get("/metrics")
        for line in text.splitlines():
            if line.startswith('exposure_detector_experiment_enrolled_users{experiment="metered"}'):
                return float(line.split()[-1])
        return None

    assert wait_until(lambda: enrolled() == 7.0, 20, what="enrolled_users 7")
    _, text = w.get("/metrics")
    lags = [line for line in text.splitlines() if line.startswith("exposure_detector_consumer_lag{")]
    assert lags and all(float(line.split()[-1]) == 0.0 for line in lags)
    assert any(f'topic="{ns.topic("exposure.assignments")}"' in line for line in lags)
