"""Score a classifier backend on the TweetEval validation splits, with the official metrics,
and the offline recipe under a shift of source and time.

    python -m streamapp.classifiers.evaluate [--data ../shared/data] [--backend offline]
                                             [--no-shift]

- hate (HatEval 2019): macro-F1 of the `hate` flag;
- offensive (OffensEval 2019): macro-F1 of the `offensive` category (offline backend);
- sentiment (SemEval 2017 task 4A): macro-averaged recall of the sentiment label.

The offline models never see these splits in training (`train.py` tunes on held-out
training data), so the figures are honest validation scores; but validation tweets come from
the same collection as the training ones, and unseen data of the same task scores lower.
The shift-robust figures (`shift.py`) retrain the offline recipe on one source or period and
score it on another: that is the estimate to quote for unseen data.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamapp.classifiers.base import Classifier
from streamapp.classifiers.datasets import DATA_ENV, default_data_dir, read_split
from streamapp.classifiers.metrics import macro_f1, macro_recall, per_class
from streamapp.models import Analysis

SENTIMENT_IDS = {"negative": 0, "neutral": 1, "positive": 2}


@dataclass(frozen=True)
class Task:
    name: str
    metric: str
    labels: tuple[int, ...]
    predict: Callable[[Analysis], int]
    #: What each label id means (TweetEval's mapping.txt).
    names: tuple[str, ...] = ()

    def name_of(self, label: int) -> str:
        return self.names[label] if label < len(self.names) else str(label)


TASKS = (
    Task("hate", "macro-F1", (0, 1), lambda a: int(a.hate), ("not-hate", "hate")),
    Task(
        "offensive",
        "macro-F1",
        (0, 1),
        lambda a: int("offensive" in a.hate_categories),
        ("not-offensive", "offensive"),
    ),
    Task(
        "sentiment",
        "macro-recall",
        (0, 1, 2),
        lambda a: SENTIMENT_IDS[a.sentiment_label],
        ("negative", "neutral", "positive"),
    ),
)


@dataclass
class Result:
    task: str
    metric: str
    score: float
    per_class: dict[str, tuple[float, float, float]]  # by class name
    n: int
    seconds: float


async def classify_all(clf: Classifier, texts: Sequence[str], batch: int) -> list[Analysis]:
    out: list[Analysis] = []
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        out.extend(await clf.classify(chunk, ["en"] * len(chunk)))
    return out


async def evaluate(
    clf: Classifier, data: Path, tasks: Sequence[Task] = TASKS, batch: int = 500
) -> list[Result]:
    results = []
    for task in tasks:
        texts, gold = read_split(data, task.name, "val")
        started = time.perf_counter()
        analyses = await classify_all(clf, texts, batch)
        seconds = time.perf_counter() - started
        pred = [task.predict(a) for a in analyses]
        score = (macro_recall if task.metric == "macro-recall" else macro_f1)(
            gold, pred, task.labels
        )
        results.append(
            Result(
                task=task.name,
                metric=task.metric,
                score=score,
                per_class={task.name_of(c): per_class(gold, pred, c) for c in task.labels},
                n=len(texts),
                seconds=seconds,
            )
        )
    return results


def report(results: Sequence[Result], clf: Classifier) -> str:
    lines = [f"backend {clf.name} {clf.version} (TweetEval validation splits)"]
    for r in results:
        lines.append(
            f"{r.task:<10} {r.metric:<13} {r.score * 100:5.1f}   n={r.n}  "
            f"{r.n / r.seconds:,.0f} msg/s"
        )
        for label, (p, rec, f1) in r.per_class.items():
            lines.append(f"    {label:<14} precision {p:.3f} recall {rec:.3f} F1 {f1:.3f}")
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    from streamapp.classifiers import create_classifier

    clf = create_classifier(args.backend)
    await clf.start()
    try:
        tasks = [t for t in TASKS if not args.task or t.name in args.task]
        print(report(await evaluate(clf, args.data, tasks, args.batch_size), clf), flush=True)
    finally:
        await clf.close()
    if args.shift:
        from streamapp.classifiers.shift import report as shift_report
        from streamapp.classifiers.shift import shift_estimates
        from streamapp.classifiers.wordvectors import load_or_distil

        vectors = load_or_distil(args.word_vectors)
        print(shift_report(shift_estimates(args.data, vectors, args.task)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--backend", default="offline")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--task", choices=[t.name for t in TASKS], action="append")
    parser.add_argument(
        "--shift",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also retrain the offline recipe across sources and years (train extra, minutes)",
    )
    parser.add_argument("--word-vectors", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.data / "tweeteval").is_dir():
        raise SystemExit(
            f"no tweeteval/ under {args.data}: point --data or {DATA_ENV} at a directory "
            "holding tweeteval/<task>/val_text.txt and val_labels.txt (the TweetEval "
            "benchmark, https://github.com/cardiffnlp/tweeteval; the project's own copy is "
            "../shared/data beside the checkout)"
        )
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
