"""Settings come from STREAMAPP_* variables; bad values fail at start naming the variable."""

from __future__ import annotations

import pytest

from streamapp.settings import SettingsError, load_settings


def test_defaults_work_against_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STREAMAPP_KAFKA_BROKER", "STREAMAPP_WEB_HOST", "STREAMAPP_ELASTICSEARCH_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.kafka_broker.startswith("kafka://127.0.0.1")
    assert s.web_host == "127.0.0.1"
    assert s.elasticsearch_url.startswith("http://127.0.0.1:9200")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_BATCH_SIZE", "123")
    monkeypatch.setenv("STREAMAPP_TWEETS_TOPIC", "posts")
    s = load_settings()
    assert s.batch_size == 123 and s.tweets_topic == "posts"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_BATCH_SIZE", "many")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "STREAMAPP_BATCH_SIZE" in str(err.value.code)


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_ELASTICSEARCH_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("STREAMAPP_ELASTICSEARCH_API_KEY", "k" * 10)
    monkeypatch.setenv("STREAMAPP_BATCH_SIZE", "0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value.code)
    assert "hunter2-secret" not in message
    assert "STREAMAPP_BATCH_SIZE" in message


def test_backend_per_topic_and_languages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_CLASSIFIER", "expertai")
    monkeypatch.setenv("STREAMAPP_TWEETS_CLASSIFIER", "")  # blank in an .env: not overridden
    monkeypatch.setenv("STREAMAPP_NEWS_CLASSIFIER", "offline")
    monkeypatch.setenv("STREAMAPP_LANGUAGES", " EN, de ")
    s = load_settings()
    assert (s.backend_for("tweets"), s.backend_for("news")) == ("expertai", "offline")
    assert s.language_set == frozenset({"en", "de"})
    monkeypatch.setenv("STREAMAPP_LANGUAGES", "english")
    with pytest.raises(SettingsError, match="STREAMAPP_LANGUAGES"):
        load_settings()
    monkeypatch.setenv("STREAMAPP_LANGUAGES", "")
    monkeypatch.setenv("STREAMAPP_NEWS_CLASSIFIER", "gpt")
    with pytest.raises(SettingsError, match="STREAMAPP_NEWS_CLASSIFIER"):
        load_settings()
