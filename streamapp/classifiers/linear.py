"""A small linear text model that runs without scikit-learn: binary n-gram features and
logistic-regression weights stored as gzipped JSON.

Training (`streamapp.classifiers.train`) uses scikit-learn with `features()` below as the
analyzer, so training and serving see exactly the same features.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_HTML_ENTITY = re.compile(r"&(amp|lt|gt|quot|#\d+);")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'*_-]*|[^\sa-z0-9]", re.IGNORECASE)
_REPEAT = re.compile(r"(.)\1{2,}")


def normalise(text: str) -> str:
    text = text.lower()
    text = _URL.sub(" httpurl ", text)
    text = _MENTION.sub(" @user ", text)
    text = _HTML_ENTITY.sub(" ", text)
    # "sooooo" and "so" should share a feature.
    return _REPEAT.sub(r"\1\1", text)


def tokens(text: str) -> list[str]:
    out = []
    for tok in _TOKEN.findall(normalise(text)):
        if tok in {"#", ".", ",", ":", ";", '"', "(", ")"}:
            continue
        out.append(tok)
    return out


def features(text: str) -> list[str]:
    """Unigrams and bigrams of normalised tokens."""
    toks = tokens(text)
    feats = list(toks)
    feats.extend(f"{a} {b}" for a, b in itertools.pairwise(toks))
    return feats


@dataclass
class LinearModel:
    """One-vs-rest logistic regression over binary features."""

    name: str
    version: str
    labels: list[str]
    intercepts: list[float]
    # feature -> one weight per label (a single weight for a binary model)
    weights: dict[str, list[float]]
    threshold: float = 0.5
    metrics: dict[str, float] | None = None
    # Real-valued inputs computed outside the model (e.g. VADER scores), by name: their
    # weights live in `weights` under these names like any other feature.
    dense: list[str] | None = None

    @property
    def binary(self) -> bool:
        return len(self.intercepts) == 1

    def decision(
        self,
        text: str,
        dense: Sequence[float] | None = None,
        feats: AbstractSet[str] | None = None,
    ) -> list[float]:
        """Scores per label; `feats` are `set(features(text))` when the caller has them
        already (several models over the same texts extract them once)."""
        scores = list(self.intercepts)
        weights = self.weights
        for feat in set(features(text)) if feats is None else feats:
            w = weights.get(feat)
            if w is not None:
                for i, wi in enumerate(w):
                    scores[i] += wi
        if self.dense:
            if dense is None or len(dense) != len(self.dense):
                raise ValueError(f"{self.name} needs dense inputs {self.dense}")
            for name, value in zip(self.dense, dense, strict=True):
                for i, wi in enumerate(weights.get(name, ())):
                    scores[i] += wi * value
        return scores

    def predict_proba(
        self,
        texts: Sequence[str],
        dense: Sequence[Sequence[float]] | None = None,
        feats: Sequence[AbstractSet[str]] | None = None,
    ) -> list[list[float]]:
        """Per text: [p(positive class)] for binary models, a softmax otherwise."""
        out = []
        for n, text in enumerate(texts):
            scores = self.decision(
                text,
                dense[n] if dense is not None else None,
                feats[n] if feats is not None else None,
            )
            if self.binary:
                out.append([_sigmoid(scores[0])])
            else:
                top = max(scores)
                exps = [math.exp(s - top) for s in scores]
                total = sum(exps)
                out.append([e / total for e in exps])
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "labels": self.labels,
            "intercepts": self.intercepts,
            "threshold": self.threshold,
            "metrics": self.metrics or {},
            "dense": self.dense or [],
            "weights": self.weights,
        }

    def save(self, path: Path) -> None:
        payload = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        # mtime=0 keeps the artefact byte-identical across identical trainings.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(payload.encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        return cls(
            name=data["name"],
            version=data["version"],
            labels=data["labels"],
            intercepts=data["intercepts"],
            weights=data["weights"],
            threshold=data.get("threshold", 0.5),
            metrics=data.get("metrics") or None,
            dense=data.get("dense") or None,
        )

    @classmethod
    def load_packaged(cls, filename: str) -> LinearModel:
        ref = resources.files("streamapp.classifiers") / "models" / filename
        with resources.as_file(ref) as path:
            return cls.load(path)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def iter_nonzero(names: Iterable[str], rows: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    """feature name -> weights, dropping features whose weights are all ~0."""
    out: dict[str, list[float]] = {}
    for j, name in enumerate(names):
        w = [round(float(row[j]), 5) for row in rows]
        if any(abs(x) >= 1e-5 for x in w):
            out[name] = w
    return out
