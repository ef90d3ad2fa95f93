"""Faust agents: one per input topic, batch in, ack after the batch is safely processed.

`noack_take` rather than `take`: `take` acks the batch in a `finally`, i.e. even when the
agent is cancelled mid-batch (shutdown or rebalance while Elasticsearch is down), and the
final commit would then skip messages that were never indexed. Here a batch is acked only
after `Pipeline.process` has returned.

Concurrency stays 1 per agent: with more, Faust can commit past a message still in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faust.types import AppT, StreamT, TopicT

from streamapp.offsets import OffsetSequencer
from streamapp.runtime import Runtime
from streamapp.settings import Settings


def register_agents(
    app: AppT,
    settings: Settings,
    inputs: dict[str, TopicT],
    runtime: Runtime,
    sequencer: OffsetSequencer,
) -> None:
    """One agent per `kind -> raw input topic`, and the timer that repairs offset gaps."""

    @app.timer(interval=1.0, name="streamapp.repair_offset_gaps")
    async def repair_offset_gaps() -> None:
        await sequencer.repair()

    async def run(stream: StreamT, kind: str) -> None:
        pipeline = await runtime.pipeline(kind)
        # `noack_take` is on Faust's Stream, not on its StreamT interface.
        take = stream.noack_take  # type: ignore[attr-defined]
        async for events in take(settings.batch_size, within=settings.batch_timeout):
            await sequencer.prepare(events)
            admitted = sequencer.admit(events)
            if admitted.process and not await runtime.unless_abandoned(
                pipeline.process(admitted.process)
            ):
                # Stopping: leave the batch unacked (not committed, delivered again after
                # the restart) and let Faust stop without waiting for it.
                sequencer.release(events)
                return
            for event in (*admitted.process, *admitted.duplicates):
                await stream.ack(event)
            sequencer.done(events)

    for kind, topic in inputs.items():
        # Names stay as they were when the agents were module functions: they name the
        # agents' repartition topics and appear in logs.
        app.agent(topic, name=f"streamapp.classify_{kind}")(_bind(run, kind))


def _bind(
    run: Callable[[StreamT, str], Awaitable[None]], kind: str
) -> Callable[[StreamT], Awaitable[None]]:
    async def agent(stream: StreamT) -> None:
        await run(stream, kind)

    agent.__name__ = agent.__qualname__ = f"classify_{kind}"
    return agent
