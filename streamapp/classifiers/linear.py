"""Linear heads over one set of hashed features, scored for a whole batch at once.

One artefact holds every head: the columns with a non-zero weight, one weight row per
output, the intercepts and each head's decision rule (and whether it reads the character
n-grams or the word n-grams alone). Word vectors and lexicon scores used in
training are folded into the unigram weights (a sum over words of a per-word quantity is
linear in the word counts), so serving needs nothing but NumPy.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamapp.classifiers.features import HashedFeatures, Occurrences, score

F64 = npt.NDArray[np.float64]


@dataclass
class Head:
    """One task: a binary head has one output and a threshold on its probability; a
    multi-class head has one output per label and takes the most probable."""

    name: str
    labels: list[str]
    threshold: float = 0.5
    metrics: dict[str, float] = field(default_factory=dict)
    #: Whether the head reads the character n-grams (else only the word n-grams).
    char_ngrams: bool = False

    @property
    def binary(self) -> bool:
        return len(self.labels) == 2

    @property
    def n_outputs(self) -> int:
        return 1 if self.binary else len(self.labels)


@dataclass
class LinearHeads:
    version: str
    features: HashedFeatures
    heads: list[Head]
    #: Outputs x features (dense in memory: 5 outputs x 2**20 columns is 20 MB).
    weights: npt.NDArray[np.float32]
    intercepts: F64

    def __post_init__(self) -> None:
        expected = (sum(h.n_outputs for h in self.heads), self.features.n_features)
        if self.weights.shape != expected or self.intercepts.shape != expected[:1]:
            raise ValueError(f"weights {self.weights.shape} do not fit heads {expected}")
        # Runs of adjacent outputs that read the same features: one gather per run, over a
        # slice of the weight rows (a view, not a copy).
        self._runs: list[tuple[slice, bool]] = []
        start = 0
        for head in self.heads:
            end = start + head.n_outputs
            chars = head.char_ngrams and bool(self.features.char_sizes)
            if self._runs and self._runs[-1][1] == chars:
                self._runs[-1] = (slice(self._runs[-1][0].start, end), chars)
            else:
                self._runs.append((slice(start, end), chars))
            start = end

    def head(self, name: str) -> Head:
        return next(h for h in self.heads if h.name == name)

    def probabilities(self, texts: list[str]) -> dict[str, F64]:
        """Per head: p(positive class) per text for binary heads, else a softmax row."""
        return self.probabilities_of(self.features.occurrences(texts))

    def probabilities_of(self, occ: Occurrences) -> dict[str, F64]:
        raw = np.empty((occ.n_texts, len(self.intercepts)), dtype=np.float64)
        for outputs, chars in self._runs:
            raw[:, outputs] = score(occ if chars else occ.words_only(), self.weights[outputs])
        raw += self.intercepts
        out: dict[str, F64] = {}
        start = 0
        for head in self.heads:
            block = raw[:, start : start + head.n_outputs]
            start += head.n_outputs
            if head.binary:
                out[head.name] = 1.0 / (1.0 + np.exp(-block[:, 0]))
            else:
                exp = np.exp(block - block.max(axis=1, keepdims=True))
                out[head.name] = exp / exp.sum(axis=1, keepdims=True)
        return out

    def save(self, path: Path) -> None:
        """Byte-identical for identical models: fixed entry order and zip timestamps."""
        columns = np.flatnonzero(np.any(self.weights != 0, axis=0)).astype(np.int32)
        meta = {
            "version": self.version,
            "bits": self.features.bits,
            **({"word_bits": self.features.word_bits} if self.features.word_bits else {}),
            **({"char_sizes": list(self.features.char_sizes)} if self.features.char_sizes else {}),
            "heads": [
                {
                    "name": h.name,
                    "labels": h.labels,
                    "threshold": h.threshold,
                    "metrics": h.metrics,
                    "char_ngrams": h.char_ngrams,
                }
                for h in self.heads
            ],
        }
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "columns": columns,
            "weights": self.weights[:, columns],
            "intercepts": self.intercepts,
        }
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            entry = zipfile.ZipInfo("meta.json", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(entry, json.dumps(meta, sort_keys=True, indent=1), zipfile.ZIP_DEFLATED)
            for name, array in arrays.items():
                buf = io.BytesIO()
                np.save(buf, array, allow_pickle=False)
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                zf.writestr(entry, buf.getvalue(), zipfile.ZIP_DEFLATED)

    @classmethod
    def load(cls, path: Path) -> LinearHeads:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))

            def array(name: str) -> npt.NDArray[np.generic]:
                return np.load(io.BytesIO(zf.read(f"{name}.npy")), allow_pickle=False)

            columns, packed, intercepts = array("columns"), array("weights"), array("intercepts")
        features = HashedFeatures(
            bits=int(meta["bits"]),
            char_sizes=tuple(int(n) for n in meta.get("char_sizes", ())),
            word_bits=int(meta.get("word_bits", 0)),
        )
        weights = np.zeros((packed.shape[0], features.n_features), dtype=np.float32)
        weights[:, columns] = packed
        return cls(
            version=meta["version"],
            features=features,
            heads=[Head(**h) for h in meta["heads"]],
            weights=weights,
            intercepts=intercepts.astype(np.float64),
        )

    @classmethod
    def load_packaged(cls, filename: str) -> LinearHeads:
        ref = resources.files("streamapp.classifiers") / "models" / filename
        with resources.as_file(ref) as path:
            return cls.load(path)
