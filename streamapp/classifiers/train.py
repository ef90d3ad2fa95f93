"""Train the offline models from the labelled data, deterministically.

    python -m streamapp.classifiers.train [--data ../shared/data]

Needs the `train` extra (scikit-learn); serving does not. Same data in, byte-identical
artefacts out (fixed split seed, deterministic solvers, gzip without timestamps).

- sentiment: 3-class logistic regression over word n-grams plus the four VADER scores,
  trained on the SemEval 2013-2016 tweets minus every copy of a TweetEval validation tweet;
- hate: logistic regression over word n-grams, trained on TweetEval hate (HatEval 2019)
  train plus Davidson et al. 2017 (class 0 = hate);
- offensive: the same on TweetEval offensive (OffensEval 2019) train.

The regularisation strength and decision threshold are chosen on a held-out tenth of the
training data, never on the TweetEval validation splits, which stay unseen until
`python -m streamapp.classifiers.evaluate` scores them.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from streamapp.classifiers.datasets import (
    Labelled,
    default_data_dir,
    read_davidson_hate,
    read_semeval_sentiment,
    read_split,
    without_overlap,
)
from streamapp.classifiers.linear import LinearModel, features, iter_nonzero
from streamapp.classifiers.metrics import macro_f1, macro_recall
from streamapp.classifiers.offline import (
    HATE_FILE,
    MODELS_DIR,
    OFFENSIVE_FILE,
    SENTIMENT_FILE,
)
from streamapp.classifiers.vader import DENSE_NAMES, Vader

MODEL_VERSION = "2"
SEED = 20261128
# VADER's scores lie in [-1, 1]; scaled up they can compete with many n-gram weights
# under the same L2 penalty.
DENSE_SCALE = 3.0


def split_off(data: Labelled, fraction: float = 0.1) -> tuple[Labelled, Labelled]:
    order = list(range(len(data[0])))
    random.Random(SEED).shuffle(order)
    cut = int(len(order) * fraction)
    held, kept = order[:cut], order[cut:]

    def pick(idx: list[int]) -> Labelled:
        return [data[0][i] for i in idx], [data[1][i] for i in idx]

    return pick(kept), pick(held)


def _vectorizer():
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer=features, binary=True, min_df=2)


def fit_binary(
    name: str,
    train: Labelled,
    tune_on: Labelled,
    extra_train: Labelled | None = None,
    c_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5),
) -> LinearModel:
    """Choose C and threshold on `tune_on` (held out of `train`), then refit on both."""
    from sklearn.linear_model import LogisticRegression

    extra = extra_train or ([], [])
    vec = _vectorizer()
    x = vec.fit_transform(train[0] + extra[0])
    y = train[1] + extra[1]
    best: tuple[float, float, float] | None = None
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", solver="liblinear")
        clf.fit(x, y)
        probs = clf.predict_proba(vec.transform(tune_on[0]))[:, 1]
        for threshold in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
            f1 = macro_f1(tune_on[1], [int(p >= threshold) for p in probs], labels=[0, 1])
            if best is None or f1 > best[0]:
                best = (f1, c, threshold)
    assert best is not None
    f1, c, threshold = best
    vec = _vectorizer()
    x = vec.fit_transform(train[0] + tune_on[0] + extra[0])
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", solver="liblinear")
    clf.fit(x, train[1] + tune_on[1] + extra[1])
    model = LinearModel(
        name=name,
        version=MODEL_VERSION,
        labels=["not-" + name, name],
        intercepts=[float(clf.intercept_[0])],
        weights=iter_nonzero(vec.get_feature_names_out(), clf.coef_),
        threshold=threshold,
        metrics={"heldout_macro_f1": round(f1, 4), "C": c},
    )
    print(
        f"{name}: C={c} threshold={threshold} held-out macro-F1={f1:.4f} "
        f"features={len(model.weights)}"
    )
    return model


def fit_sentiment(
    train: Labelled, tune_on: Labelled, c_grid: tuple[float, ...] = (0.3, 1.0)
) -> LinearModel:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    vader = Vader()

    def matrix(vec, texts: list[str], fit: bool = False):
        words = vec.fit_transform(texts) if fit else vec.transform(texts)
        dense = csr_matrix([[v * DENSE_SCALE for v in vader.scores(t)] for t in texts])
        return hstack([words, dense]).tocsr()

    vec = _vectorizer()
    x = matrix(vec, train[0], fit=True)
    x_tune = matrix(vec, tune_on[0])
    best: tuple[float, float] | None = None
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
        clf.fit(x, train[1])
        recall = macro_recall(tune_on[1], list(clf.predict(x_tune)), labels=[0, 1, 2])
        print(f"sentiment: C={c} held-out macro-recall={recall:.4f}")
        if best is None or recall > best[0]:
            best = (recall, c)
    assert best is not None
    recall, c = best
    vec = _vectorizer()
    texts = train[0] + tune_on[0]
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    clf.fit(matrix(vec, texts, fit=True), train[1] + tune_on[1])
    names = [*vec.get_feature_names_out(), *DENSE_NAMES]
    weights = iter_nonzero(names, clf.coef_)
    # The dense inputs arrive unscaled at serving time: fold the scale into their weights.
    for name in DENSE_NAMES:
        if name in weights:
            weights[name] = [round(w * DENSE_SCALE, 5) for w in weights[name]]
    model = LinearModel(
        name="sentiment",
        version=MODEL_VERSION,
        labels=["negative", "neutral", "positive"],
        intercepts=[float(b) for b in clf.intercept_],
        weights=weights,
        metrics={"heldout_macro_recall": round(recall, 4), "C": c},
        dense=list(DENSE_NAMES),
    )
    print(f"sentiment: C={c} features={len(weights)}")
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument(
        "--only", choices=["sentiment", "hate", "offensive"], action="append", default=None
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["sentiment", "hate", "offensive"])

    if "sentiment" in only:
        val_texts = read_split(args.data, "sentiment", "val")[0]
        semeval, dropped = without_overlap(read_semeval_sentiment(args.data), val_texts)
        print(
            f"sentiment: {len(semeval[0])} training tweets "
            f"({dropped} copies of validation tweets dropped)"
        )
        train, tune = split_off(semeval)
        fit_sentiment(train, tune).save(args.out / SENTIMENT_FILE)

    if "hate" in only:
        train, tune = split_off(read_split(args.data, "hate", "train"))
        fit_binary("hate", train, tune, extra_train=read_davidson_hate(args.data)).save(
            args.out / HATE_FILE
        )

    if "offensive" in only:
        train, tune = split_off(read_split(args.data, "offensive", "train"))
        fit_binary("offensive", train, tune).save(args.out / OFFENSIVE_FILE)


if __name__ == "__main__":
    main()
