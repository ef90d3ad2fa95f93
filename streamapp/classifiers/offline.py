"""The default classifier: no network, no model download, no scikit-learn at run time.

- sentiment: a 3-class logistic regression over word n-grams and the four VADER scores
  (VADER's lexicon ships in the `vaderSentiment` wheel), trained on SemEval tweets; label is
  the most probable class, score is p(positive) - p(negative) in [-1, 1];
- hate speech: a logistic regression over word n-grams trained on HatEval + Davidson et al.;
- offensive language: a second head trained on OffensEval, reported as a category.

All three are trained by `python -m streamapp.classifiers.train` and shipped in the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from streamapp.classifiers.base import Langs, ThreadedClassifier
from streamapp.classifiers.linear import LinearModel, features
from streamapp.classifiers.vader import VADER_VERSION, Vader
from streamapp.models import Analysis

MODELS_DIR = Path(__file__).parent / "models"
SENTIMENT_FILE = "sentiment-lr.json.gz"
HATE_FILE = "hate-lr.json.gz"
OFFENSIVE_FILE = "offensive-lr.json.gz"

HATE_CATEGORY = "hate_speech"
OFFENSIVE_CATEGORY = "offensive"


class OfflineClassifier(ThreadedClassifier):
    name = "offline"

    def __init__(self) -> None:
        self._vader = Vader()
        self._sentiment = LinearModel.load_packaged(SENTIMENT_FILE)
        self._hate = LinearModel.load_packaged(HATE_FILE)
        self._offensive = LinearModel.load_packaged(OFFENSIVE_FILE)
        self.version = (
            f"sentiment-lr-{self._sentiment.version}+vader-{VADER_VERSION}"
            f"+hate-lr-{self._hate.version}+offensive-lr-{self._offensive.version}"
        )
        super().__init__()

    def classify_sync(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        # The three heads share their features: extracted once, not once per head.
        feats = [set(features(t)) for t in texts]
        sent_p = self._sentiment.predict_proba(texts, self._vader.batch(texts), feats)
        hate_p = self._hate.predict_proba(texts, feats=feats)
        off_p = self._offensive.predict_proba(texts, feats=feats)
        labels = self._sentiment.labels
        out = []
        for probs, (ph,), (po,) in zip(sent_p, hate_p, off_p, strict=True):
            best = max(range(len(probs)), key=probs.__getitem__)
            score = probs[labels.index("positive")] - probs[labels.index("negative")]
            hateful = ph >= self._hate.threshold
            categories = []
            if hateful:
                categories.append(HATE_CATEGORY)
            if po >= self._offensive.threshold:
                categories.append(OFFENSIVE_CATEGORY)
            out.append(
                Analysis(
                    sentiment_label=labels[best],
                    sentiment_score=round(score, 4),
                    hate=hateful,
                    hate_score=round(ph, 4),
                    hate_categories=categories,
                    classifier=self.name,
                    classifier_version=self.version,
                )
            )
        return out
