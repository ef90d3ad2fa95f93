"""`python -m streamapp.kibana import` against a local server speaking Kibana's status and saved
objects import APIs (tests/servers/kibana_server.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.kibana_server import KibanaServer

from streamapp.kibana.__main__ import main
from streamapp.kibana.objects import OBJECTS_FILE, load_objects

OBJECTS = load_objects()
IDS = sorted((o["type"], o["id"]) for o in OBJECTS)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own Kibana and index settings must not leak into these tests.
    for var in list(os.environ):
        if var.startswith("STREAMAPP_KIBANA_") or var in (
            "STREAMAPP_TWEETS_INDEX",
            "STREAMAPP_NEWS_INDEX",
        ):
            monkeypatch.delenv(var)


@pytest.fixture
def kibana() -> Iterator[KibanaServer]:
    with KibanaServer(unavailable_first=2, username="elastic", password="s3cret-pw") as srv:
        yield srv


def test_import_waits_for_kibana_then_sends_every_object(kibana: KibanaServer) -> None:
    env = {
        **os.environ,
        "STREAMAPP_KIBANA_URL": kibana.url,
        "STREAMAPP_KIBANA_USERNAME": "elastic",
        "STREAMAPP_KIBANA_PASSWORD": "s3cret-pw",
        "STREAMAPP_TWEETS_INDEX": "prod-tweets",
        "STREAMAPP_NEWS_INDEX": "prod-news",
        "STREAMAPP_ALERTS_INDEX": "prod-alerts",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streamapp.kibana", "import"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(f"import took {time.monotonic() - started:.1f}s")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # It waited: two "unavailable" answers, then "available", and only then the import.
    statuses = [r.status for r in kibana.status_requests()]
    assert statuses == [503, 503, 200]
    paths = [r.path for r in kibana.requests]
    assert paths == ["/api/status"] * 3 + ["/api/saved_objects/_import"]

    (imp,) = kibana.imports
    req = kibana.requests[-1]
    assert req.method == "POST" and req.status == 200
    assert imp.params == {"overwrite": "true"}
    assert req.headers["kbn-xsrf"] == "true"
    expected = base64.b64encode(b"elastic:s3cret-pw").decode()
    assert req.headers["authorization"] == f"Basic {expected}"
    assert imp.filename.endswith(".ndjson") and imp.space == "default"
    assert sorted((o["type"], o["id"]) for o in imp.objects) == IDS
    # Data views were rewritten to the configured indices, everything else sent as shipped.
    views = [o for o in imp.objects if o["type"] == "index-pattern"]
    wanted = {"prod-tweets", "prod-news", "prod-tweets,prod-news", "prod-alerts"}
    assert {o["attributes"]["title"] for o in views} == wanted
    shipped = {(o["type"], o["id"]): o for o in OBJECTS}
    for obj in imp.objects:
        if obj["type"] != "index-pattern":
            assert obj == shipped[(obj["type"], obj["id"])]

    assert f"successCount: {len(OBJECTS)} of {len(OBJECTS)}" in proc.stdout
    for kind, oid in IDS:
        assert f"{kind:<14} {oid}" in proc.stdout
    assert "streamapp — sentiment and hate speech" in proc.stdout
    assert "s3cret-pw" not in proc.stdout + proc.stderr


def test_api_key_space_and_reimport_overwrites(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with KibanaServer(unavailable_first=0, api_key="a2V5OnNlY3JldA==") as kibana:
        monkeypatch.setenv("STREAMAPP_KIBANA_URL", kibana.url + "/")
        monkeypatch.setenv("STREAMAPP_KIBANA_API_KEY", "a2V5OnNlY3JldA==")
        monkeypatch.setenv("STREAMAPP_KIBANA_SPACE", "ops")
        assert main(["import"]) == 0
        assert main(["import"]) == 0

    first, second = kibana.imports
    assert first.space == second.space == "ops"
    assert [r.path for r in kibana.requests if r.method == "POST"] == [
        "/s/ops/api/saved_objects/_import"
    ] * 2
    assert all(r.headers["authorization"] == "ApiKey a2V5OnNlY3JldA==" for r in kibana.requests)
    # Same ids the second time: Kibana overwrites instead of adding copies.
    assert not any(item.get("overwrite") for item in first.result["successResults"])
    assert all(item.get("overwrite") for item in second.result["successResults"])
    assert len(kibana.store) == len(OBJECTS)
    assert "a2V5OnNlY3JldA==" not in capsys.readouterr().out


def test_import_errors_exit_non_zero_and_are_printed(
    kibana: KibanaServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # The shipped objects minus the news data view: the panel on it has a dangling reference.
    broken = tmp_path / "broken.ndjson"
    lines = OBJECTS_FILE.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if json.loads(line)["id"] != "streamapp-dv-news"]
    assert len(kept) == len(lines) - 1
    broken.write_text("\n".join(kept) + "\n", encoding="utf-8")
    monkeypatch.setenv("STREAMAPP_KIBANA_URL", kibana.url)
    monkeypatch.setenv("STREAMAPP_KIBANA_USERNAME", "elastic")
    monkeypatch.setenv("STREAMAPP_KIBANA_PASSWORD", "s3cret-pw")

    assert main(["import", "--file", str(broken)]) == 1

    out, err = capsys.readouterr()
    (imp,) = kibana.imports
    failed = {e["id"] for e in imp.result["errors"]}
    assert "streamapp-lens-top-outlets" in failed
    for oid in failed:
        assert f"error: lens {oid}" in err
    assert "missing_references: missing index-pattern streamapp-dv-news" in err
    assert "import failed" in err
    assert f"successCount: {imp.result['successCount']} of {len(kept)}" in out


def test_never_ready_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with KibanaServer(never_available=True) as kibana:
        monkeypatch.setenv("STREAMAPP_KIBANA_URL", kibana.url)
        monkeypatch.setenv("STREAMAPP_KIBANA_WAIT_TIMEOUT", "1.5")
        started = time.monotonic()
        assert main(["import"]) == 2
        print(f"gave up after {time.monotonic() - started:.1f}s")
    captured = capsys.readouterr()
    err = captured.err
    # Said at once, with how long it will wait.
    first = captured.out.splitlines()[0]
    assert first.startswith(f"Kibana at {kibana.url} is not answering yet"), first
    assert "waiting up to 1.5s (STREAMAPP_KIBANA_WAIT_TIMEOUT)" in first
    assert f"Kibana at {kibana.url} was not available after 1.5s" in err
    assert "'unavailable'" in err and "STREAMAPP_KIBANA_WAIT_TIMEOUT" in err
    assert len(kibana.status_requests()) >= 2 and not kibana.imports


def test_wrong_credentials_fail_without_waiting(
    kibana: KibanaServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMAPP_KIBANA_URL", kibana.url)
    monkeypatch.setenv("STREAMAPP_KIBANA_USERNAME", "elastic")
    monkeypatch.setenv("STREAMAPP_KIBANA_PASSWORD", "wrong-pw")
    assert main(["import"]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials (HTTP 401)" in err and "wrong-pw" not in err
    assert len(kibana.requests) == 1 and not kibana.imports


def test_half_configured_credentials_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_KIBANA_USERNAME", "elastic")
    with pytest.raises(SystemExit) as exc:
        main(["import"])
    assert "STREAMAPP_KIBANA_USERNAME and STREAMAPP_KIBANA_PASSWORD" in str(exc.value)


def test_blank_credentials_from_an_env_file_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamapp.kibana import KibanaSettings

    for name in ("USERNAME", "PASSWORD", "API_KEY", "SPACE"):
        monkeypatch.setenv(f"STREAMAPP_KIBANA_{name}", "")
    settings = KibanaSettings()
    assert (settings.username, settings.password, settings.api_key, settings.space) == (
        None,
        None,
        None,
        None,
    )
