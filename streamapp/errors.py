"""The one distinction the pipeline's error handling rests on.

A `DependencyError` means something the worker depends on as a whole is failing (Kafka,
Elasticsearch, a remote classifier in `wait` mode): the batch is retried with backoff and
nothing is consumed meanwhile (backpressure). Any other exception is taken to be caused by
the input: the batch is split until the message that fails is alone, and that message goes
to the dead-letter topic, so that no single message can stop a partition.
"""

from __future__ import annotations


class DependencyError(Exception):
    """A dependency as a whole is unavailable; retry, never blame a message."""


class ServiceUnreachable(DependencyError):
    """A service does not answer; the message (one line) names the service, the address and
    the setting to check. Commands that cannot start without it print that line and exit
    (`exit_unreachable`); the set-up command waits and tries again."""


class UnreachableExit(SystemExit):
    """Ends a command with the one-line message of a ServiceUnreachable, no traceback."""
