"""The transformers backend, on two tiny random-weight BERTs built and saved here (no download):
loading from local folders, batching, label mapping, the offline half, its errors, and that no
network connection is ever attempted."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
from tiny_models import MAX_LENGTH, TinyModel, build_tiny_models

from streamapp.classifiers.base import SENTIMENT_LABELS, sentiment_label
from streamapp.classifiers.huggingface import (
    TransformersClassifier,
    TransformersError,
    TransformersSettings,
)
from streamapp.classifiers.offline import OfflineClassifier

TEXTS = [
    "i love this movie , the best day",
    "they are dirty vermin , kill them all",
    "the news today",
    "",
    "zxq unknown words only",
    # Longer than MAX_LENGTH tokens: truncated the same way as in the direct computation.
    " ".join(["this service is awful and the food was the worst"] * 6),
    "we are so happy with our team",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMAPP_TRANSFORMERS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every attempt to open a network connection is recorded and refused."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def refuse(address: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(address)
        raise OSError(f"network access attempted in a test: {address!r}")

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        return refuse(address)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    yield attempts


async def _classify(settings: TransformersSettings, texts: list[str]) -> tuple[list[Any], str]:
    clf = TransformersClassifier(settings)
    await clf.start()
    try:
        started = time.perf_counter()
        results = await clf.classify(texts)
        print(f"{clf.name}: {len(texts)} texts in {time.perf_counter() - started:.3f} s")
        return results, clf.version
    finally:
        await clf.close()


async def test_both_models_from_local_folders(
    tiny: dict[str, TinyModel], no_network: list[Any]
) -> None:
    expected_sent = [tiny["sentiment"].probs(t) for t in TEXTS]
    expected_hate = [tiny["hate"].probs(t)[1] for t in TEXTS]
    # A threshold between two of the texts' scores, so both decisions are exercised.
    ranked = sorted(expected_hate)
    threshold = (ranked[2] + ranked[3]) / 2
    settings = TransformersSettings(
        sentiment_model=str(tiny["sentiment"].folder),
        hate_model=str(tiny["hate"].folder),
        hate_threshold=threshold,
        # Smaller than the batch: several padded, length-sorted forward passes.
        batch_size=3,
        max_length=MAX_LENGTH,
        threads=1,
    )
    results, version = await _classify(settings, TEXTS)

    assert len(results) == len(TEXTS)
    for r, sent, p_hate in zip(results, expected_sent, expected_hate, strict=True):
        assert r.sentiment_label in SENTIMENT_LABELS
        # LABEL_0/1/2 = negative/neutral/positive under the default mapping.
        assert r.sentiment_score == pytest.approx(sent[2] - sent[0], abs=2e-4)
        assert r.sentiment_label == sentiment_label(sent[2] - sent[0])
        assert r.hate_score == pytest.approx(p_hate, abs=2e-4)
        assert r.hate == (p_hate >= threshold)
        assert r.hate_categories == (["hateful"] if r.hate else [])
        assert r.classifier == "transformers" and r.classifier_version == version
    assert {r.hate for r in results} == {True, False}
    # Random weights still separate the texts: not one constant output for everything.
    assert len({r.sentiment_score for r in results}) > 1
    assert re.fullmatch(r"sentiment=sentiment@[0-9a-f]{12};hate=hate@[0-9a-f]{12}", version)
    assert no_network == []


async def test_unconfigured_half_comes_from_the_offline_classifier(
    tiny: dict[str, TinyModel], no_network: list[Any]
) -> None:
    settings = TransformersSettings(
        sentiment_model=str(tiny["sentiment"].folder), max_length=MAX_LENGTH
    )
    results, version = await _classify(settings, TEXTS)

    offline = OfflineClassifier()
    reference = offline.classify_sync(TEXTS)
    await offline.close()
    for r, ref, text in zip(results, reference, TEXTS, strict=True):
        sent = tiny["sentiment"].probs(text)
        assert r.sentiment_score == pytest.approx(sent[2] - sent[0], abs=2e-4)
        assert (r.hate, r.hate_score, r.hate_categories) == (
            ref.hate,
            ref.hate_score,
            ref.hate_categories,
        )
    assert re.fullmatch(r"sentiment=sentiment@[0-9a-f]{12};hate=offline-.+", version)
    assert version.endswith(f";hate=offline-{offline.version}")
    assert no_network == []


async def test_label_settings_from_the_environment(
    tiny: dict[str, TinyModel], no_network: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hate model's labels mean nothing to the default sentiment mapping: named error.
    monkeypatch.setenv("STREAMAPP_TRANSFORMERS_SENTIMENT_MODEL", str(tiny["hate"].folder))
    with pytest.raises(TransformersError, match="STREAMAPP_TRANSFORMERS_SENTIMENT_LABELS"):
        await _classify(TransformersSettings(), TEXTS[:2])

    # Mapped explicitly (JSON, any case), the 2-class model scores p(positive) - p(negative).
    monkeypatch.setenv(
        "STREAMAPP_TRANSFORMERS_SENTIMENT_LABELS", '{"NORMAL": "negative", "hateful": "positive"}'
    )
    monkeypatch.setenv("STREAMAPP_TRANSFORMERS_MAX_LENGTH", str(MAX_LENGTH))
    results, _ = await _classify(TransformersSettings(), TEXTS[:2])
    for r, text in zip(results, TEXTS[:2], strict=True):
        p = tiny["hate"].probs(text)
        assert r.sentiment_score == pytest.approx(p[1] - p[0], abs=2e-4)

    # A hate model none of whose labels is listed as hateful: named error.
    monkeypatch.setenv("STREAMAPP_TRANSFORMERS_HATE_MODEL", str(tiny["hate"].folder))
    monkeypatch.setenv("STREAMAPP_TRANSFORMERS_HATE_LABELS", '["toxic"]')
    with pytest.raises(TransformersError, match="STREAMAPP_TRANSFORMERS_HATE_LABELS"):
        await _classify(TransformersSettings(), TEXTS[:2])
    assert no_network == []


async def test_hub_name_not_in_cache_fails_without_any_download(
    tmp_path: Path, no_network: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hub offline mode off, so it is the backend's own local_files_only that keeps it offline
    # (the socket guard would record the request otherwise).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    settings = TransformersSettings(
        hate_model="example-org/streamapp-not-cached", cache_dir=tmp_path / "hf-cache"
    )
    with pytest.raises(TransformersError) as err:
        await _classify(settings, TEXTS[:1])
    message = str(err.value)
    assert "example-org/streamapp-not-cached" in message
    assert "not in the Hugging Face cache" in message
    assert "STREAMAPP_TRANSFORMERS_ALLOW_DOWNLOAD" in message
    assert no_network == []


def test_missing_model_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(TransformersError, match="STREAMAPP_TRANSFORMERS_HATE_MODEL") as err:
        TransformersClassifier(TransformersSettings(hate_model=str(missing)))
    assert str(missing) in str(err.value)


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the package unimportable, as if not installed.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TransformersError, match=re.escape("pip install 'streamapp[transformers]'")):
        TransformersClassifier(TransformersSettings())
