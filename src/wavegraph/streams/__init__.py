"""Kafka plumbing: topics, producer, the consume→sink→commit loop, dead letters, shutdown."""
