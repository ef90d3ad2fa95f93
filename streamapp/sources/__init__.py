"""Sources: outside services -> typed records -> the input topics.

Each source is a `sources.base.Source` (`async run(out: RecordOutput)`, `stop()`);
`sources.runner` gives it a Kafka output and runs it until it stops or the process is
interrupted, the same way for all of them. Blocking client libraries
(tweepy, newsapi-python) run in threads and hand records over through `ThreadBridge`, a
bounded queue: when Kafka is slow the thread blocks instead of memory growing.
"""
