"""Classifier backends behind one async, batch-oriented interface."""

from __future__ import annotations

from streamapp.classifiers.base import Classifier


def create_classifier(name: str) -> Classifier:
    if name == "offline":
        from streamapp.classifiers.offline import OfflineClassifier

        return OfflineClassifier()
    raise ValueError(f"unknown classifier {name!r}")


__all__ = ["Classifier", "create_classifier"]
