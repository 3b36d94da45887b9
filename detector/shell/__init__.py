"""Kafka- and HTTP-facing adapters around the pure core (engine, lifecycle, registration)."""
