"""/health/'s progress rules: stuck agents and unreachable dependencies turn it 503."""

from __future__ import annotations

import asyncio

from streamapp.health import AgentProgress, any_reachable, assess

NOW = 10_000.0


def progress(**kw: object) -> AgentProgress:
    base: dict[str, object] = {
        "lag": 0,
        "batch_started_at": None,
        "batch_oldest_timestamp": None,
        "last_batch_at": NOW - 1,
        "failing": False,
    }
    return AgentProgress(**{**base, **kw})  # type: ignore[arg-type]


def check(agents: dict[str, AgentProgress], **kw: object) -> tuple[str, list[str], dict]:
    args: dict[str, object] = {
        "ready": True,
        "kafka_reachable": True,
        "elasticsearch_reachable": True,
        "now": NOW,
        "started_at": NOW - 1_000,
        "stall_seconds": 60.0,
    }
    return assess(agents=agents, **{**args, **kw})  # type: ignore[arg-type]


def test_idle_and_busy_agents_are_healthy() -> None:
    status, problems, report = check(
        {"tweets": progress(), "news": progress(batch_started_at=NOW - 5, lag=300)}
    )
    assert (status, problems) == ("ok", [])
    assert report["news"]["batch_in_progress_seconds"] == 5


def test_a_batch_held_too_long_is_a_stall() -> None:
    status, problems, report = check(
        {"tweets": progress(batch_started_at=NOW - 90, batch_oldest_timestamp=NOW - 95)}
    )
    assert status == "degraded" and "tweets: one batch in progress for 90s" in problems
    assert report["tweets"]["oldest_unprocessed_age_seconds"] == 95


def test_messages_waiting_with_no_batch_is_a_stall() -> None:
    status, problems, _ = check({"tweets": progress(lag=40_000, last_batch_at=NOW - 120)})
    assert status == "degraded" and "40000 messages waiting" in problems[0]
    # Nothing waiting: a quiet topic is not a stall.
    assert check({"tweets": progress(lag=0, last_batch_at=NOW - 3_600)})[0] == "ok"


def test_unreachable_dependencies_and_failing_batches_are_degraded() -> None:
    assert check({}, kafka_reachable=False)[1] == ["kafka unreachable"]
    assert check({}, elasticsearch_reachable=False)[0] == "degraded"
    assert check({"news": progress(failing=True)})[1] == ["news: last attempt failed"]


def test_not_ready_is_starting_and_never_a_stall() -> None:
    status, problems, _ = check({"tweets": progress(lag=5, last_batch_at=None)}, ready=False)
    assert status == "starting" and problems == []


async def test_any_reachable() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await any_reachable([("127.0.0.1", 1), ("127.0.0.1", port)])
    finally:
        server.close()
        await server.wait_closed()
    assert not await any_reachable([("127.0.0.1", port)], within=0.5)
