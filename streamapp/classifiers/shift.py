"""Shift-robust estimates: the offline recipe retrained on one source or period and scored
on another, because validation tweets drawn from the training collection overstate what a
model scores on newer data (HatEval's own test split differs in topic and time).

- hate: HatEval 2019 (TweetEval train + val) -> Davidson et al. 2017, and back;
- offensive: OffensEval 2019 (TweetEval train + val) -> Davidson et al., and back;
- sentiment: SemEval 2013-2014 tweets -> SemEval 2016 tweets.

The SemEval file keeps its source's order (the 2013 files, 2014, 2015, then 2016, see
`OLDER_END` and `NEWEST_START`); the 2015 block between them is left out so that the two
sides share no collection period. Every figure uses the task's official metric, a threshold
chosen on held-out training data, and the training code of `train.py` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamapp.classifiers.datasets import (
    Labelled,
    read_semeval_sentiment,
    read_split,
    without_overlap,
)
from streamapp.classifiers.metrics import macro_f1, macro_recall
from streamapp.classifiers.train import (
    Corpora,
    assemble,
    fit_binary,
    fit_sentiment,
    join,
    split_off,
)
from streamapp.classifiers.wordvectors import WordVectors

# Rows of semeval2017/sentiment_train.tsv: before OLDER_END the tweets mention 2012 events
# and nobody mentions Trump; from NEWEST_START on, 2015-2016 events (Trump's campaign, the
# iPhone 6s) take over — the order of the source's 2013..2016 files.
OLDER_END = 18_000
NEWEST_START = 20_000


@dataclass(frozen=True)
class ShiftResult:
    task: str
    direction: str
    metric: str
    score: float
    n_train: int
    n_test: int


def _binary_score(name: str, train: Labelled, test: Labelled, vectors: WordVectors) -> float:
    fitted = fit_binary(name, *split_off(train), vectors)
    model = assemble([fitted])
    probs = model.probabilities(test[0])[name]
    pred = (probs >= fitted[0].head.threshold).astype(int).tolist()
    return macro_f1(test[1], pred, labels=[0, 1])


def _sentiment_score(train: Labelled, test: Labelled, vectors: WordVectors) -> float:
    model = assemble([fit_sentiment(*split_off(train), vectors)])
    pred = np.argmax(model.probabilities(test[0])["sentiment"], axis=1).tolist()
    return macro_recall(test[1], pred, labels=[0, 1, 2])


def shift_estimates(
    root: Path,
    vectors: WordVectors,
    tasks: Sequence[str] | None = None,
    older_end: int = OLDER_END,
    newest_start: int = NEWEST_START,
) -> list[ShiftResult]:
    data = Corpora.read(root)
    out = []
    wanted = set(tasks or ("hate", "offensive", "sentiment"))
    for task, source, davidson in (
        ("hate", data.hate, data.davidson_hate),
        ("offensive", data.offensive, data.davidson_offensive),
    ):
        if task not in wanted:
            continue
        tweeteval = join(source, read_split(root, task, "val"))
        name = "HatEval" if task == "hate" else "OffensEval"
        for direction, train, test in (
            (f"{name} -> Davidson", tweeteval, davidson),
            (f"Davidson -> {name}", davidson, tweeteval),
        ):
            score = _binary_score(task, train, test, vectors)
            out.append(ShiftResult(task, direction, "macro-F1", score, len(train[0]), len(test[0])))
    if "sentiment" in wanted:
        # Rows of the file as it is, before the copies of validation tweets go.
        texts, labels = read_semeval_sentiment(root)
        val_texts = read_split(root, "sentiment", "val")[0]
        older, _ = without_overlap((texts[:older_end], labels[:older_end]), val_texts)
        newest, _ = without_overlap((texts[newest_start:], labels[newest_start:]), val_texts)
        score = _sentiment_score(older, newest, vectors)
        out.append(
            ShiftResult(
                "sentiment",
                "SemEval 2013-14 -> 2016",
                "macro-recall",
                score,
                len(older[0]),
                len(newest[0]),
            )
        )
    return out


def report(results: Sequence[ShiftResult]) -> str:
    lines = ["shift-robust (offline recipe retrained; the estimate for unseen data)"]
    by_task: dict[str, list[float]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r.score)
        lines.append(
            f"{r.task:<10} {r.metric:<13} {r.score * 100:5.1f}   {r.direction} "
            f"(train {r.n_train}, test {r.n_test})"
        )
    for task, scores in by_task.items():
        if len(scores) > 1:
            lines.append(f"{task:<10} mean of both directions {np.mean(scores) * 100:5.1f}")
    return "\n".join(lines)
