"""Readers for the labelled data the offline models are trained and validated on.

Layout (see ../shared/data/README.md): `tweeteval/{hate,offensive,sentiment}/{split}_text.txt`
and `{split}_labels.txt`; `semeval2017/sentiment_train.tsv` (`label<TAB>text`);
`davidson2017/labeled_data.csv`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from streamapp.classifiers.features import words_of

Labelled = tuple[list[str], list[int]]

DATA_ENV = "STREAMAPP_TRAINING_DATA"


def default_data_dir() -> Path:
    """$STREAMAPP_TRAINING_DATA, else `../shared/data` beside the checkout."""
    if env := os.environ.get(DATA_ENV):
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def read_split(root: Path, task: str, split: str) -> Labelled:
    base = root / "tweeteval" / task
    texts = (base / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    labels = [int(x) for x in (base / f"{split}_labels.txt").read_text().split()]
    if len(texts) != len(labels):
        raise SystemExit(f"{base}/{split}: {len(texts)} texts but {len(labels)} labels")
    return texts, labels


def read_semeval_sentiment(root: Path) -> Labelled:
    texts, labels = [], []
    path = root / "semeval2017" / "sentiment_train.tsv"
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        label, sep, text = line.partition("\t")
        if not sep or label not in {"0", "1", "2"}:
            raise SystemExit(f"{path}:{n}: expected 'label<TAB>text' with label 0, 1 or 2")
        texts.append(text)
        labels.append(int(label))
    return texts, labels


def read_davidson(root: Path) -> tuple[Labelled, Labelled]:
    """Davidson et al. 2017 twice: hate (class 0) vs the rest, and offensive (class 0 or 1:
    hate speech is offensive too) vs neither."""
    texts, classes = [], []
    with open(root / "davidson2017" / "labeled_data.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["tweet"])
            classes.append(row["class"])
    return (
        (texts, [int(c == "0") for c in classes]),
        (list(texts), [int(c in {"0", "1"}) for c in classes]),
    )


def fingerprint(text: str) -> str:
    """What two copies of one tweet share once links, mentions and case differ: its words
    as the classifier sees them, but for the link and mention placeholders."""
    return " ".join(w for w in words_of([text]) if w not in {"httpurl", "@user"})


def without_overlap(train: Labelled, held_out: list[str]) -> tuple[Labelled, int]:
    """Drop training tweets that are copies of held-out ones (same text but for links and
    mentions): the SemEval training set holds such copies of almost half of the TweetEval
    sentiment validation tweets, which would make validation scores meaningless."""
    seen = {fingerprint(t) for t in held_out}
    keep = [i for i, t in enumerate(train[0]) if fingerprint(t) not in seen]
    return ([train[0][i] for i in keep], [train[1][i] for i in keep]), len(train[0]) - len(keep)
