"""`make run` (`python -m devstack.run`) as a user meets it: its own services per checkout,
a clean stop on SIGTERM, and a fast, named failure when a service cannot be reached."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import Namespace, free_port, wait_for

from devstack.config import PROJECT_ROOT
from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from devstack.process import pid_alive, port_open, read_pid
from devstack.run import DEMO_TERMS

pytestmark = pytest.mark.integration


def start_run(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack.run", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_unreachable_elasticsearch_fails_fast_naming_it(namespace: Namespace) -> None:
    log = namespace.workdir / "make-run.log"
    env = {**namespace.env, "STREAMAPP_ELASTICSEARCH_URL": "http://127.0.0.1:1"}
    started = time.monotonic()
    proc = start_run(env, log)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    print(f"\nFIGURE make run gave up on an unreachable Elasticsearch after {elapsed:.0f}s")
    assert proc.returncode == 1, text
    assert "cannot reach elasticsearch at http://127.0.0.1:1 (STREAMAPP_ELASTICSEARCH_URL)" in text
    port = int(namespace.env["STREAMAPP_WEB_PORT"])
    assert not port_open("127.0.0.1", port), "the worker was left running"


def test_a_second_checkout_gets_its_own_services_and_sigterm_stops_everything(
    namespace: Namespace, tmp_path: Path
) -> None:
    """Other run dir and ports, as a second clone would set them: its own Kafka and
    Elasticsearch start (the first checkout's are neither adopted nor reported), and SIGTERM,
    as a supervisor or `timeout` sends it, stops the worker and both services."""
    run_dir = tmp_path / "other-checkout"
    kafka_port, es_port = free_port(), free_port()
    env = {
        **namespace.env,
        "DEVSTACK_RUN_DIR": str(run_dir),
        "DEVSTACK_KAFKA_PORT": str(kafka_port),
        "DEVSTACK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "DEVSTACK_ES_PORT": str(es_port),
        "STREAMAPP_KAFKA_BROKER": f"kafka://127.0.0.1:{kafka_port}",
        "STREAMAPP_ELASTICSEARCH_URL": f"http://127.0.0.1:{es_port}",
    }
    cfg = dataclasses.replace(
        namespace.cfg,
        run_dir=run_dir.resolve(),
        kafka_port=kafka_port,
        elasticsearch_port=es_port,
    )
    log = tmp_path / "make-run.log"
    proc = start_run(env, log)
    try:
        wait_for(
            lambda: "streamapp is running" in log.read_text(errors="replace"),
            timeout=300,
            what="make run to be up",
        )
        text = log.read_text(errors="replace")
        assert f"kafka 4.1.1: ready on 127.0.0.1:{kafka_port}" in text, text
        assert f"ready on http://127.0.0.1:{es_port}" in text, text
        kafka_pid = read_pid(KafkaService(cfg).pid_file)
        es_pid = read_pid(ElasticsearchService(cfg).pid_file)
        assert kafka_pid is not None and pid_alive(kafka_pid)
        assert es_pid is not None and pid_alive(es_pid)
        # Not the first checkout's node: that one has another home and pid.
        assert ElasticsearchService(cfg).home != ElasticsearchService(namespace.cfg).home
        # The demo tracks words of the sample: the terms panel fills up as it loops.
        web = f"http://127.0.0.1:{env['STREAMAPP_WEB_PORT']}"

        def love_counted() -> bool:
            with urllib.request.urlopen(f"{web}/hate/", timeout=5) as resp:
                body = json.load(resp)
            assert body["terms"] == DEMO_TERMS.split(","), body["terms"]
            return body["term_totals"]["love"].get("messages", 0) > 0

        wait_for(love_counted, timeout=90, what="the demo's tracked term 'love' counted")
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        took = time.monotonic() - stopped_at
        print(f"\nFIGURE make run stopped everything on SIGTERM in {took:.0f}s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for svc in (KafkaService(cfg), ElasticsearchService(cfg)):
            svc.kill()  # only if SIGTERM left it running (the assertions below say so)
        shutil.rmtree(ElasticsearchService(cfg).home, ignore_errors=True)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text
    assert "stopping (SIGTERM)" in text
    assert "the bundled sample in a loop at 10 msg/s" in text
    demo = subprocess.run(["pgrep", "-f", "replay --restamp --repeat"], capture_output=True)
    assert demo.returncode == 1, "the looping demo was left running"
    assert not port_open("127.0.0.1", kafka_port), "kafka left running"
    assert not port_open("127.0.0.1", es_port), "elasticsearch left running"
    assert not port_open("127.0.0.1", int(env["STREAMAPP_WEB_PORT"])), "worker left running"
    assert not pid_alive(kafka_pid) and not pid_alive(es_pid)


def test_make_run_with_two_workers(namespace: Namespace) -> None:
    """`make run WORKERS=2`: two workers in one consumer group, each answering for both."""
    first = free_port()
    second = first + 1
    if port_open("127.0.0.1", second):
        pytest.skip(f"port {second} is taken, and make run uses consecutive ports")
    env = {**namespace.env, "STREAMAPP_WEB_PORT": str(first)}
    log = namespace.workdir / "make-run-2.log"
    proc = start_run(env, log, "--workers", "2")
    try:
        wait_for(
            lambda: "streamapp is running" in log.read_text(errors="replace"),
            timeout=240,
            what="make run with two workers",
        )
        assert "2 worker(s)" in log.read_text(errors="replace")
        for port in (first, second):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=10) as resp:
                body = json.load(resp)
            assert len(body["workers"]) == 2, body["workers"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text(errors="replace")
    assert not port_open("127.0.0.1", first) and not port_open("127.0.0.1", second)
