"""Train the offline hate and offensive-language models from the labelled data.

    python -m streamapp.classifiers.train --data ../shared/data

Deterministic (fixed solver, no random state involved), so the same data gives the same
artefact. Needs the `train` extra (scikit-learn); serving does not.

Data (see ../shared/data/README.md):
- hate: TweetEval hate (HatEval 2019) train, plus Davidson et al. 2017 (class 0 = hate,
  1/2 = not hate), which adds hate aimed at targets HatEval lacks;
- offensive: TweetEval offensive (OffensEval 2019) train.
The TweetEval validation splits are never used for fitting; they give the metrics printed
here and recorded in the artefact (choosing C and the threshold on them makes these
validation figures optimistic, as the evaluation command's output says).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from streamapp.classifiers.linear import LinearModel, features, iter_nonzero
from streamapp.classifiers.metrics import macro_f1

MODELS_DIR = Path(__file__).parent / "models"
HATE_FILE = "hate-lr.json.gz"
OFFENSIVE_FILE = "offensive-lr.json.gz"
MODEL_VERSION = "1"


def read_split(root: Path, task: str, split: str) -> tuple[list[str], list[int]]:
    base = root / "tweeteval" / task
    texts = (base / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    labels = [int(x) for x in (base / f"{split}_labels.txt").read_text().split()]
    if len(texts) != len(labels):
        raise SystemExit(f"{base}/{split}: {len(texts)} texts but {len(labels)} labels")
    return texts, labels


def read_davidson(root: Path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with open(root / "davidson2017" / "labeled_data.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["tweet"])
            labels.append(1 if row["class"] == "0" else 0)
    return texts, labels


def fit_binary(
    name: str,
    train: tuple[list[str], list[int]],
    val: tuple[list[str], list[int]],
    c_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5),
) -> LinearModel:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(analyzer=features, binary=True, min_df=2)
    x_train = vec.fit_transform(train[0])
    best: tuple[float, float, float, object] | None = None
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", solver="liblinear")
        clf.fit(x_train, train[1])
        probs = clf.predict_proba(vec.transform(val[0]))[:, 1]
        for threshold in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
            preds = [int(p >= threshold) for p in probs]
            f1 = macro_f1(val[1], preds, labels=[0, 1])
            if best is None or f1 > best[0]:
                best = (f1, c, threshold, clf)
    assert best is not None
    f1, c, threshold, clf = best
    names = vec.get_feature_names_out()
    model = LinearModel(
        name=name,
        version=MODEL_VERSION,
        labels=["not-" + name, name],
        intercepts=[float(clf.intercept_[0])],  # type: ignore[attr-defined]
        weights=iter_nonzero(names, clf.coef_),  # type: ignore[attr-defined]
        threshold=threshold,
        metrics={"val_macro_f1": round(f1, 4), "C": c},
    )
    print(
        f"{name}: C={c} threshold={threshold} validation macro-F1={f1:.4f} "
        f"features={len(model.weights)}"
    )
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    hate_train = read_split(args.data, "hate", "train")
    dav = read_davidson(args.data)
    hate = fit_binary(
        "hate",
        (hate_train[0] + dav[0], hate_train[1] + dav[1]),
        read_split(args.data, "hate", "val"),
    )
    hate.save(args.out / HATE_FILE)

    offensive = fit_binary(
        "offensive",
        read_split(args.data, "offensive", "train"),
        read_split(args.data, "offensive", "val"),
    )
    offensive.save(args.out / OFFENSIVE_FILE)


if __name__ == "__main__":
    main()
