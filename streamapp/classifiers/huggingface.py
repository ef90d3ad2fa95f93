"""The transformers backend: fine-tuned sequence-classification models run locally on CPU.

Install with `pip install 'streamapp[transformers]'`. Each half is configured on its own:

- `STREAMAPP_TRANSFORMERS_SENTIMENT_MODEL`: a local folder (`save_pretrained` output) or a hub
  name already in the Hugging Face cache. Its labels are mapped to negative/neutral/positive by
  `STREAMAPP_TRANSFORMERS_SENTIMENT_LABELS`; the score is p(positive) - p(negative).
- `STREAMAPP_TRANSFORMERS_HATE_MODEL`: same; the probabilities of the labels listed in
  `STREAMAPP_TRANSFORMERS_HATE_LABELS` are summed into `hate_score`.

A half that is not configured comes from the offline classifier, and the version string says so.
Weights are never fetched at run time unless `STREAMAPP_TRANSFORMERS_ALLOW_DOWNLOAD=true`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamapp.classifiers.base import Langs, ThreadedClassifier, sentiment_label
from streamapp.models import Analysis

ENV_PREFIX = "STREAMAPP_TRANSFORMERS_"
INSTALL_HINT = "pip install 'streamapp[transformers]'"
Polarity = Literal["negative", "neutral", "positive"]

#: Covers the label names of the common sentiment checkpoints: `LABEL_0/1/2` (cardiffnlp's
#: twitter-roberta), negative/neutral/positive, NEG/NEU/POS (bertweet) and 1-5 stars.
#: Matching ignores case.
DEFAULT_SENTIMENT_LABELS: dict[str, Polarity] = {
    "label_0": "negative",
    "label_1": "neutral",
    "label_2": "positive",
    "negative": "negative",
    "neutral": "neutral",
    "positive": "positive",
    "neg": "negative",
    "neu": "neutral",
    "pos": "positive",
    "1 star": "negative",
    "2 stars": "negative",
    "3 stars": "neutral",
    "4 stars": "positive",
    "5 stars": "positive",
}
DEFAULT_HATE_LABELS: list[str] = [
    "hate",
    "hateful",
    "hate_speech",
    "hate speech",
    "LABEL_1",
    "toxic",
    "offensive",
    "abusive",
]
#: `hate_categories` name for a hate label that carries no meaning of its own (`LABEL_1`),
#: the same category the offline classifier uses.
GENERIC_HATE_CATEGORY = "hate_speech"
_GENERIC_LABEL = re.compile(r"^label_\d+$", re.IGNORECASE)
_LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


class TransformersError(RuntimeError):
    """The backend cannot run as configured; the message says which setting to change."""


class TransformersSettings(BaseSettings):
    """`STREAMAPP_TRANSFORMERS_*`. Mappings and lists are JSON in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    sentiment_model: str | None = Field(None, description="local folder or cached hub name")
    hate_model: str | None = Field(None, description="local folder or cached hub name")
    sentiment_labels: dict[str, Polarity] = Field(
        default_factory=lambda: dict(DEFAULT_SENTIMENT_LABELS),
        description="model label -> negative|neutral|positive (JSON object, case-insensitive)",
    )
    hate_labels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_HATE_LABELS),
        description="model labels that mean hateful (JSON list, case-insensitive)",
    )
    hate_threshold: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(32, ge=1, le=4096, description="texts per forward pass")
    max_length: int = Field(128, ge=8, le=8192, description="tokens kept per text")
    threads: int | None = Field(None, ge=1, le=256, description="torch threads (default: torch)")
    #: Off by default: a hub name must already be in the cache, nothing is fetched at run time.
    allow_download: bool = False
    cache_dir: Path | None = Field(None, description="Hugging Face cache (default: HF_HOME)")

    @field_validator("sentiment_model", "hate_model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        # `STREAMAPP_TRANSFORMERS_HATE_MODEL=` in an env file means "not configured".
        if value is None or not value.strip():
            return None
        return value.strip()


@dataclass
class _Loaded:
    """One loaded model, with what its output columns mean."""

    source: str
    tokenizer: Any
    model: Any
    labels: list[str]  # column i of the logits
    multi_label: bool  # sigmoid per label instead of a softmax over labels
    version: str


def missing_packages() -> list[str]:
    """The extra's packages that cannot be imported (cheap: nothing is imported)."""
    return [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]


def is_local_path(source: str) -> bool:
    """A hub name is `name` or `org/name`; anything path-like or existing is a local folder."""
    return source.startswith(_LOCAL_PREFIXES) or Path(source).expanduser().exists()


def model_display_name(source: str) -> str:
    if is_local_path(source):
        return Path(source).expanduser().resolve().name
    return source


def folder_digest(folder: Path) -> str:
    """Short content hash of a model folder, so a retrained model saved over the same path gets
    a new version in every document it classifies."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:12]


class TransformersClassifier(ThreadedClassifier):
    """Both halves run in the one worker thread of ThreadedClassifier, loading included, so
    neither the import of torch nor a forward pass ever blocks the event loop."""

    name = "transformers"

    def __init__(self, settings: TransformersSettings | None = None) -> None:
        self.settings = settings or TransformersSettings()
        missing = missing_packages()
        if missing:
            raise TransformersError(
                f"the transformers backend needs {' and '.join(missing)}: {INSTALL_HINT}"
            )
        s = self.settings
        # Fail on a mistyped folder now rather than at the first batch.
        for setting, source in (
            ("SENTIMENT_MODEL", s.sentiment_model),
            ("HATE_MODEL", s.hate_model),
        ):
            if source and is_local_path(source) and not Path(source).expanduser().is_dir():
                raise TransformersError(
                    f"{ENV_PREFIX}{setting}={source!r}: no such model folder "
                    "(expected the output of save_pretrained, with config.json)"
                )
        self._sentiment: _Loaded | None = None
        self._hate: _Loaded | None = None
        self._offline: Any = None
        self._loaded = False
        self._sentiment_map = {k.lower(): v for k, v in s.sentiment_labels.items()}
        self._hate_set = {label.lower() for label in s.hate_labels}
        self.version = self._version_string()
        super().__init__()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._loaded:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    async def close(self) -> None:
        await super().close()
        self._sentiment = self._hate = self._offline = None
        self._loaded = False

    def _load(self) -> None:
        try:
            import torch
        except (ImportError, OSError, ValueError) as exc:
            # Installed but broken, e.g. torch without the CUDA libraries its wheel links to.
            raise TransformersError(f"torch cannot be imported ({exc}): {INSTALL_HINT}") from exc

        s = self.settings
        if s.threads:
            torch.set_num_threads(s.threads)
        if s.sentiment_model:
            self._sentiment = self._load_model(s.sentiment_model)
            self._check_sentiment_labels(self._sentiment)
        if s.hate_model:
            self._hate = self._load_model(s.hate_model)
            self._check_hate_labels(self._hate)
        if self._sentiment is None or self._hate is None:
            from streamapp.classifiers.offline import OfflineClassifier

            self._offline = OfflineClassifier()
        self.version = self._version_string()
        self._loaded = True

    def _load_model(self, source: str) -> _Loaded:
        # Importing transformers here, in the worker thread, keeps its ~4 s import off the loop.
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # Progress bars for loading weights are noise in a worker's log.
        hf_logging.disable_progress_bar()

        # transformers may otherwise ask the hub's conversion bot to open a pull request for a
        # cached .bin-only checkpoint: a network call nobody asked for.
        os.environ.setdefault("DISABLE_SAFETENSORS_CONVERSION", "1")
        local = is_local_path(source)
        path = str(Path(source).expanduser()) if local else source
        kwargs: dict[str, Any] = {"local_files_only": local or not self.settings.allow_download}
        if self.settings.cache_dir is not None:
            kwargs["cache_dir"] = str(self.settings.cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        except OSError as exc:
            if local:
                raise TransformersError(f"cannot load the model folder {path!r}: {exc}") from exc
            if not self.settings.allow_download:
                raise TransformersError(
                    f"model {source!r} is not a local folder and is not in the Hugging Face cache"
                    f" ({self.settings.cache_dir or 'HF_HOME'}); streamapp never downloads"
                    f" weights unless {ENV_PREFIX}ALLOW_DOWNLOAD=true. Fetch it once (e.g."
                    f" `hf download {source}`) or point the setting at a local folder."
                ) from exc
            raise TransformersError(f"cannot load model {source!r}: {exc}") from exc
        model.eval()
        config = model.config
        labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        # The hub's commit when loaded from its cache, else the folder's content.
        revision: str | None = getattr(config, "_commit_hash", None)
        if revision:
            revision = revision[:12]
        elif local:
            revision = folder_digest(Path(path))
        else:
            revision = "unknown"
        return _Loaded(
            source=source,
            tokenizer=tokenizer,
            model=model,
            labels=labels,
            multi_label=config.problem_type == "multi_label_classification",
            version=f"{model_display_name(source)}@{revision}",
        )

    def _check_sentiment_labels(self, loaded: _Loaded) -> None:
        setting = f"{ENV_PREFIX}SENTIMENT_LABELS"
        unknown = [label for label in loaded.labels if label.lower() not in self._sentiment_map]
        if unknown:
            raise TransformersError(
                f"sentiment model {loaded.source!r} has labels {loaded.labels} and {unknown} are"
                f" not in {setting}; set it to a JSON object mapping every label to"
                " negative/neutral/positive"
            )
        polarities = {self._sentiment_map[label.lower()] for label in loaded.labels}
        if not {"negative", "positive"} <= polarities:
            # e.g. a 2-class LABEL_0/LABEL_1 model read with the 3-class default mapping.
            mapped = {label: self._sentiment_map[label.lower()] for label in loaded.labels}
            raise TransformersError(
                f"sentiment model {loaded.source!r}: {setting} maps its labels to {mapped};"
                " one label must mean negative and one positive"
                ' (e.g. {"LABEL_0": "negative", "LABEL_1": "positive"})'
            )

    def _check_hate_labels(self, loaded: _Loaded) -> None:
        setting = f"{ENV_PREFIX}HATE_LABELS"
        flagged = [label for label in loaded.labels if label.lower() in self._hate_set]
        if not flagged or len(flagged) == len(loaded.labels):
            raise TransformersError(
                f"hate model {loaded.source!r} has labels {loaded.labels}, of which {flagged}"
                f" are listed in {setting}; set it to a JSON list naming the labels that mean"
                " hateful (some, not all, of the model's labels)"
            )

    def _version_string(self) -> str:
        offline = "offline"
        if self._offline is not None:
            offline = f"offline-{self._offline.version}"

        def half(loaded: _Loaded | None, source: str | None) -> str:
            if loaded is not None:
                return loaded.version
            return model_display_name(source) if source else offline

        s = self.settings
        return (
            f"sentiment={half(self._sentiment, s.sentiment_model)};"
            f"hate={half(self._hate, s.hate_model)}"
        )

    # -- inference -------------------------------------------------------------------

    def probabilities(self, loaded: _Loaded, texts: Sequence[str]) -> list[list[float]]:
        """Per text, the probability of each of `loaded.labels`."""
        import torch

        s = self.settings
        # Length-sorted batches pad less; results go back to input order below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), s.batch_size):
                idx = order[start : start + s.batch_size]
                enc = loaded.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=s.max_length,
                    return_tensors="pt",
                )
                logits = loaded.model(**enc).logits.float()
                probs = torch.sigmoid(logits) if loaded.multi_label else logits.softmax(dim=-1)
                for i, row in zip(idx, probs.tolist(), strict=True):
                    out[i] = row
        return out

    def classify_sync(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        if not self._loaded:
            raise RuntimeError("TransformersClassifier.start() must be awaited first")
        offline = self._offline.classify_sync(texts, langs) if self._offline is not None else None
        sentiment = (
            self.probabilities(self._sentiment, texts) if self._sentiment is not None else None
        )
        hate = self.probabilities(self._hate, texts) if self._hate is not None else None
        results = []
        for i in range(len(texts)):
            fields: dict[str, Any] = {}
            if sentiment is not None and self._sentiment is not None:
                fields.update(self._sentiment_fields(self._sentiment.labels, sentiment[i]))
            else:
                assert offline is not None
                fields["sentiment_label"] = offline[i].sentiment_label
                fields["sentiment_score"] = offline[i].sentiment_score
            if hate is not None and self._hate is not None:
                fields.update(self._hate_fields(self._hate, hate[i]))
            else:
                assert offline is not None
                fields["hate"] = offline[i].hate
                fields["hate_score"] = offline[i].hate_score
                fields["hate_categories"] = list(offline[i].hate_categories)
            results.append(
                Analysis(**fields, classifier=self.name, classifier_version=self.version)
            )
        return results

    def _sentiment_fields(self, labels: list[str], probs: list[float]) -> dict[str, Any]:
        # p(positive) - p(negative): for a 2-class model this is 2p - 1, so an unsure model
        # lands in the neutral band instead of being forced to a side.
        score = 0.0
        for label, p in zip(labels, probs, strict=True):
            polarity = self._sentiment_map[label.lower()]
            if polarity == "positive":
                score += p
            elif polarity == "negative":
                score -= p
        score = max(-1.0, min(1.0, score))
        return {"sentiment_label": sentiment_label(score), "sentiment_score": round(score, 4)}

    def _hate_fields(self, loaded: _Loaded, probs: list[float]) -> dict[str, Any]:
        flagged = [
            (label, p)
            for label, p in zip(loaded.labels, probs, strict=True)
            if label.lower() in self._hate_set
        ]
        # Softmax columns exclude each other, so their sum is p(any hate label); independent
        # sigmoid columns do not add up, the strongest one is the score.
        total = max(p for _, p in flagged) if loaded.multi_label else sum(p for _, p in flagged)
        total = max(0.0, min(1.0, total))
        threshold = self.settings.hate_threshold
        hateful = total >= threshold
        categories: list[str] = []
        if hateful:
            # The labels that carry the decision: each one over the threshold, or else the
            # most probable one (several hate labels can share a score that passes together).
            chosen = [label for label, p in flagged if p >= threshold]
            if not chosen:
                chosen = [max(flagged, key=lambda item: item[1])[0]]
            for label in chosen:
                name = GENERIC_HATE_CATEGORY if _GENERIC_LABEL.match(label) else label.lower()
                if name not in categories:
                    categories.append(name)
        return {"hate": hateful, "hate_score": round(total, 4), "hate_categories": categories}
