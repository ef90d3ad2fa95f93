"""A service that cannot be reached is one line naming it, its address and the setting, from
the worker and from every source, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

from devstack.config import PROJECT_ROOT

COMMANDS = {
    "worker": ["-m", "faust", "-A", "streamapp", "worker", "-l", "info"],
    "replay": ["-m", "streamapp.sources", "replay"],
    "jetstream": ["-m", "streamapp.sources", "jetstream"],
    "newsapi": ["-m", "streamapp.sources", "newsapi", "--once"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_kafka_unreachable_is_one_line(command: str, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "STREAMAPP_KAFKA_BROKER": f"kafka://{dead}",
        "STREAMAPP_DATA_DIR": str(tmp_path / "data"),
        "STREAMAPP_WEB_PORT": str(free_port()),
        "STREAMAPP_JETSTREAM_STATE_DIR": str(tmp_path / "jetstream"),
        "STREAMAPP_NEWSAPI_STATE_DIR": str(tmp_path / "newsapi"),
        "NEWSAPI_KEY": "k" * 32,
        "STREAMAPP_NEWSAPI_QUERY": "climate",
    }
    done = subprocess.run(
        [sys.executable, *COMMANDS[command]],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out, out
    last = done.stderr.strip().splitlines()[-1]
    assert f"cannot reach Kafka at {dead} (STREAMAPP_KAFKA_BROKER)" in last, out
