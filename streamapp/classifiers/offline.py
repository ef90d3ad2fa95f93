"""The default classifier: no network, no model download.

- sentiment: VADER (lexicon shipped in the `vaderSentiment` wheel), compound score in [-1, 1]
  with the authors' +/-0.05 neutral band;
- hate speech: a logistic regression on word n-grams trained from HatEval + Davidson et al.
  (`train.py`), shipped in the package; `offensive` is a second head trained on OffensEval.
"""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from streamapp.classifiers.base import ThreadedClassifier, sentiment_label
from streamapp.classifiers.linear import LinearModel
from streamapp.classifiers.train import HATE_FILE, OFFENSIVE_FILE
from streamapp.models import Analysis

HATE_CATEGORY = "hate_speech"
OFFENSIVE_CATEGORY = "offensive"


class OfflineClassifier(ThreadedClassifier):
    name = "offline"

    def __init__(self) -> None:
        self._vader = SentimentIntensityAnalyzer()
        self._hate = LinearModel.load_packaged(HATE_FILE)
        self._offensive = LinearModel.load_packaged(OFFENSIVE_FILE)
        self.version = (
            f"vader-3.3.2+hate-lr-{self._hate.version}+offensive-lr-{self._offensive.version}"
        )
        super().__init__()

    def classify_sync(self, texts: Sequence[str]) -> list[Analysis]:
        hate_p = self._hate.predict_proba(texts)
        off_p = self._offensive.predict_proba(texts)
        out = []
        for text, (ph,), (po,) in zip(texts, hate_p, off_p, strict=True):
            compound = float(self._vader.polarity_scores(text)["compound"])
            hateful = ph >= self._hate.threshold
            categories = []
            if hateful:
                categories.append(HATE_CATEGORY)
            if po >= self._offensive.threshold:
                categories.append(OFFENSIVE_CATEGORY)
            out.append(
                Analysis(
                    sentiment_label=sentiment_label(compound),
                    sentiment_score=round(compound, 4),
                    hate=hateful,
                    hate_score=round(ph, 4),
                    hate_categories=categories,
                    classifier=self.name,
                    classifier_version=self.version,
                )
            )
        return out
