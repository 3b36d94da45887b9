"""The fleet's routing facts: the partition of an experiment is the producers', and the
assignor carries the worker's URL without changing the assignment protocol."""

from __future__ import annotations

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2 as java_murmur2  # kafka-python's producers (simulate)

from detector.web.fleet import ROUTES, advertising_assignor, default_advertised_url, partition_of


def test_partition_of_matches_the_producers_default_partitioner():
    for n in (1, 4, 6, 8, 64):
        parts = list(range(n))
        for i in range(300):
            exp = f"experiment-{i}-ü"
            key = exp.encode()
            assert partition_of(exp, n) == DefaultPartitioner()(key, parts, parts)
            assert partition_of(exp, n) == (java_murmur2(key) & 0x7FFFFFFF) % n


def test_assignor_advertises_the_url_under_the_round_robin_name():
    cls = advertising_assignor("http://10.0.0.7:6066")
    assert cls.name == RoundRobinPartitionAssignor.name  # mixed fleets keep one protocol
    meta = cls.metadata(["t.exposure.assignments"])
    decoded = ConsumerProtocolMemberMetadata.decode(meta.encode())
    assert decoded.user_data == b"http://10.0.0.7:6066"
    assert decoded.subscription == ["t.exposure.assignments"]


def test_default_url_and_routes():
    assert default_advertised_url("127.0.0.1", 6066) == "http://127.0.0.1:6066"
    assert not default_advertised_url("0.0.0.0", 6066).startswith("http://0.0.0.0")
    # every experiment- or incident-scoped route of the API is routed
    assert ROUTES["/v1/experiments/{experiment}/blast-radius"] == "experiment"
    assert ROUTES["/v1/incidents/{id}/ack"] == "incident"
    assert ROUTES["/v1/incidents"].startswith("gather:")
