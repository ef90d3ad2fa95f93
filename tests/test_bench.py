"""`make bench` in small: the harness runs every row on the real Kafka and Elasticsearch and
writes figures that add up (its speed figures are printed, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.pipeline import main
from devstack.config import DevstackConfig


@pytest.mark.integration
def test_bench_harness_measures_every_row(devstack: DevstackConfig, tmp_path: Path) -> None:
    code = main(
        [
            "--messages", "400",
            "--workers", "1",
            "--seed-messages", "40",
            "--latency-rate", "100",
            "--latency-seconds", "3",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    (path,) = tmp_path.glob("bench-*.json")
    results = json.loads(path.read_text())
    assert code == 0, results
    assert results["classifier_msgs_per_s"] > 0
    assert {name: r["indexed"] for name, r in results["baselines"].items()} == {
        "raw ceiling": 400,
        "seed-style": 40,
    }
    (e2e,) = results["end_to_end"]
    assert (e2e["indexed"], e2e["counted"], e2e["workers"]) == (400, 400, 1)
    assert set(e2e["cpu_s_per_1000"]) == {"worker-0", "kafka", "elasticsearch"}
    assert all(v > 0 for v in e2e["peak_rss_mb"].values()), e2e
    lat = results["latency"]
    assert lat["produced"] == lat["searchable"] == 300
    assert 0 < lat["p50_s"] <= lat["p90_s"] <= lat["p99_s"] <= lat["max_s"] < 30
