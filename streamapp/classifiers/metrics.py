"""The official TweetEval metrics, dependency-free."""

from __future__ import annotations

from collections.abc import Sequence


def per_class(gold: Sequence[int], pred: Sequence[int], label: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of one class (0.0 where undefined)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p == label)
    fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != label and p == label)
    fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p != label)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def macro_f1(gold: Sequence[int], pred: Sequence[int], labels: Sequence[int]) -> float:
    return sum(per_class(gold, pred, c)[2] for c in labels) / len(labels)


def macro_recall(gold: Sequence[int], pred: Sequence[int], labels: Sequence[int]) -> float:
    return sum(per_class(gold, pred, c)[1] for c in labels) / len(labels)
