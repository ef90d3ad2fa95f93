"""create_app: one place builds a worker; importing the package builds none."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from streamapp.factory import create_app
from streamapp.settings import load_settings


def test_importing_any_module_builds_no_worker(tmp_path: Path) -> None:
    # A fresh interpreter, with settings that would fail validation if anything read them.
    code = (
        "import sys, streamapp, streamapp.sources.twitter, streamapp.kibana.__main__, "
        "streamapp.classifiers.train, streamapp.pipeline, streamapp.views\n"
        "assert 'streamapp.factory' not in sys.modules, 'factory imported'\n"
        "import os; assert not os.path.exists('data'), 'data dir created'\n"
    )
    env = {"STREAMAPP_WINDOW_SIZE": "not a number", "STREAMAPP_DATA_DIR": "data", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_one_process_holds_two_differently_configured_apps(tmp_path: Path) -> None:
    a = create_app(
        load_settings(app_id="a", table_store="memory://", data_dir=tmp_path / "a", web_port=7001)
    )
    b = create_app(
        load_settings(
            app_id="b",
            table_store="memory://",
            data_dir=tmp_path / "b",
            window_size=10.0,
            tweets_topic="other-tweets",
        )
    )
    assert (a.conf.id, b.conf.id) == ("a", "b")
    assert a.parts.tables.sentiment["tumbling"].window.size == 60.0
    assert b.parts.tables.sentiment["tumbling"].window.size == 10.0
    for app, topic in ((a, "tweets"), (b, "other-tweets")):
        assert sorted(app.agents) == ["streamapp.classify_news", "streamapp.classify_tweets"]
        assert topic in app.agents["streamapp.classify_tweets"].channel.topics
    assert a.parts.runtime is not b.parts.runtime
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()


def test_faust_finds_the_app_on_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_choice_restored: None
) -> None:
    from faust.cli.base import find_app

    import streamapp

    monkeypatch.setenv("STREAMAPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STREAMAPP_TABLE_STORE", "memory://")
    monkeypatch.setattr(streamapp, "_app", None)
    from streamapp.settings import get_settings

    get_settings.cache_clear()
    try:
        app = find_app("streamapp")
        assert app is streamapp.app and app.conf.id == "streamapp"
        # The worker's path chooses its event loop before the worker makes it.
        assert type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
    finally:
        get_settings.cache_clear()
