"""Classifier backends behind one async, batch-oriented interface."""

from __future__ import annotations

from streamapp.classifiers.base import Classifier, PartialFailure

BACKENDS = ("offline", "expertai", "transformers")


def create_classifier(name: str) -> Classifier:
    """A backend by name; its own settings come from the environment (see README)."""
    if name == "offline":
        from streamapp.classifiers.offline import OfflineClassifier

        return OfflineClassifier()
    if name == "expertai":
        from streamapp.classifiers.expertai import ExpertAiClassifier

        return ExpertAiClassifier()
    if name == "transformers":
        from streamapp.classifiers.huggingface import TransformersClassifier

        return TransformersClassifier()
    raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Classifier", "PartialFailure", "create_classifier"]
