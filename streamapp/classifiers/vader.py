"""VADER scores as dense inputs of the trained sentiment model (same code in training and
serving, so both see identical numbers)."""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

VADER_VERSION = "3.3.2"
DENSE_NAMES = ["__vader_compound", "__vader_pos", "__vader_neg", "__vader_neu"]


class Vader:
    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def scores(self, text: str) -> list[float]:
        s = self._analyzer.polarity_scores(text)
        return [s["compound"], s["pos"], s["neg"], s["neu"]]

    def batch(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.scores(t) for t in texts]
