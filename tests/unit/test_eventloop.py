"""The worker's event loop: uvloop unless Faust's own switch names one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from streamapp.eventloop import FAUST_LOOP_VARIABLES, use_default_loop


def test_uvloop_by_default(loop_choice_restored: None) -> None:
    assert use_default_loop() == "uvloop"
    loop = asyncio.new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    assert os.environ["FAUST_LOOP"] == "uvloop", "processes started from it agree"


@pytest.mark.parametrize("variable", FAUST_LOOP_VARIABLES)
def test_fausts_switch_wins(
    loop_choice_restored: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "aio")
    policy = asyncio.get_event_loop_policy()
    assert use_default_loop() == "aio"
    assert asyncio.get_event_loop_policy() is policy, "left as faust set it"


def test_faust_dash_l_aio_reaches_us() -> None:
    # `faust -L aio ...`: faust's import turns the switch into FAUST_LOOP, which we honour.
    code = (
        "import sys; sys.argv = ['faust', '-L', 'aio', '-A', 'streamapp', 'worker']\n"
        "import faust, asyncio\n"
        "from streamapp.eventloop import use_default_loop\n"
        "assert use_default_loop() == 'aio'\n"
        "assert not type(asyncio.get_event_loop_policy()).__module__.startswith('uvloop')\n"
    )
    env = {"PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
