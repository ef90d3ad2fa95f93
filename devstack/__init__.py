"""Local Kafka and Elasticsearch for development and tests, without Docker.

Kept apart from the `streamapp` package: the app talks to whatever brokers its settings name,
and this launcher only provides real ones on loopback.
"""
