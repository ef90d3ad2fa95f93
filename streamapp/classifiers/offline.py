"""The default classifier: no network, no model download, nothing but NumPy at run time.

Three linear heads over hashed word unigrams and bigrams, the hate and offensive heads also
over character 3-5-grams inside words (`features.py`), one artefact
(`models/offline-heads.zip`, trained by `python -m streamapp.classifiers.train`):

- sentiment: 3 classes, trained on SemEval 2013-2016 tweets; label is the most probable
  class, score is p(positive) - p(negative) in [-1, 1];
- hate speech: trained on HatEval 2019 + Davidson et al. 2017;
- offensive language: trained on OffensEval 2019 (+ Davidson's offensive class), reported as
  a category.

Word vectors distilled from MiniLM and VADER's lexicon are folded into the word weights in
training, so they cost nothing here. A batch of 500 is a few milliseconds of array work, run
in the classifier's thread like any CPU-bound backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamapp.classifiers.base import Langs, ThreadedClassifier
from streamapp.classifiers.linear import LinearHeads
from streamapp.models import Analysis

MODELS_DIR = Path(__file__).parent / "models"
HEADS_FILE = "offline-heads.zip"

HATE_CATEGORY = "hate_speech"
OFFENSIVE_CATEGORY = "offensive"


class OfflineClassifier(ThreadedClassifier):
    name = "offline"

    def __init__(self, model: LinearHeads | None = None) -> None:
        self._model = model or LinearHeads.load_packaged(HEADS_FILE)
        self._sentiment = self._model.head("sentiment")
        self._hate = self._model.head("hate")
        self._offensive = self._model.head("offensive")
        self.version = f"heads-{self._model.version}"
        super().__init__()

    def classify_sync(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        probs = self._model.probabilities(list(texts))
        sentiment = probs["sentiment"]
        labels = self._sentiment.labels
        best = sentiment.argmax(axis=1)
        scores = np.round(
            sentiment[:, labels.index("positive")] - sentiment[:, labels.index("negative")], 4
        )
        p_hate = probs["hate"]
        hateful = p_hate >= self._hate.threshold
        offensive = probs["offensive"] >= self._offensive.threshold
        hate_scores = np.round(p_hate, 4)
        out = []
        for i in range(len(texts)):
            categories = []
            if hateful[i]:
                categories.append(HATE_CATEGORY)
            if offensive[i]:
                categories.append(OFFENSIVE_CATEGORY)
            out.append(
                Analysis(
                    sentiment_label=labels[best[i]],
                    sentiment_score=float(scores[i]),
                    hate=bool(hateful[i]),
                    hate_score=float(hate_scores[i]),
                    hate_categories=categories,
                    classifier=self.name,
                    classifier_version=self.version,
                )
            )
        return out
