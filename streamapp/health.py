"""Is the worker making progress? Pure rules for `/health/`, fed by the views.

A monitor that silently stops is the worst failure it can have, so health is about progress,
not only about whether the process answers: an agent that holds one batch for too long, or
takes nothing while messages wait, turns `/health/` 503, as does a broker or an Elasticsearch
the worker cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AgentProgress:
    """What one agent (tweets or news) is doing, as `/health/` reports it."""

    lag: int | None  # messages after the next one to process, summed over partitions
    batch_started_at: float | None  # the batch in progress, if any
    batch_oldest_timestamp: float | None  # Kafka timestamp of its oldest message
    last_batch_at: float | None
    failing: bool  # the last attempt of the batch in progress failed

    def report(self, now: float, started_at: float) -> dict[str, Any]:
        since_batch = now - (self.last_batch_at or started_at)
        oldest = None
        if self.batch_oldest_timestamp is not None:
            oldest = max(0.0, now - self.batch_oldest_timestamp)
        elif self.lag == 0:
            oldest = 0.0
        return {
            "lag": self.lag,
            "batch_in_progress_seconds": (
                None if self.batch_started_at is None else round(now - self.batch_started_at, 3)
            ),
            "oldest_unprocessed_age_seconds": None if oldest is None else round(oldest, 3),
            "seconds_since_last_batch": round(since_batch, 3),
        }


def stalled(
    progress: AgentProgress, now: float, started_at: float, stall_seconds: float
) -> str | None:
    """Why the agent counts as stuck, or None."""
    if progress.batch_started_at is not None and now - progress.batch_started_at > stall_seconds:
        return f"one batch in progress for {now - progress.batch_started_at:.0f}s"
    since = now - (progress.last_batch_at or started_at)
    if progress.batch_started_at is None and (progress.lag or 0) > 0 and since > stall_seconds:
        return f"{progress.lag} messages waiting and no batch for {since:.0f}s"
    return None


def assess(
    *,
    ready: bool,
    kafka_reachable: bool,
    elasticsearch_reachable: bool,
    agents: Mapping[str, AgentProgress],
    now: float,
    started_at: float,
    stall_seconds: float,
) -> tuple[str, list[str], dict[str, Any]]:
    """(status, problems, per-agent report); status is ok, starting or degraded."""
    problems = []
    if not kafka_reachable:
        problems.append("kafka unreachable")
    if not elasticsearch_reachable:
        problems.append("elasticsearch unreachable")
    report = {}
    for name, progress in agents.items():
        report[name] = progress.report(now, started_at)
        if progress.failing:
            problems.append(f"{name}: last attempt failed")
        if ready and (why := stalled(progress, now, started_at, stall_seconds)):
            report[name]["stalled"] = why
            problems.append(f"{name}: {why}")
    if not ready:
        status = "starting"
    elif problems:
        status = "degraded"
    else:
        status = "ok"
    return status, problems, report


async def any_reachable(addresses: Iterable[tuple[str, int]], within: float = 2.0) -> bool:
    """True when a TCP connection to one of `addresses` opens within `within` seconds."""
    for host, port in addresses:
        try:
            async with asyncio.timeout(within):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
