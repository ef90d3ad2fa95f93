"""Train the offline heads from the labelled data, deterministically.

    python -m streamapp.classifiers.train [--data ../shared/data] [--word-vectors DIR]

Needs the `train` extra (scikit-learn, model2vec) and the word vectors of
`python -m streamapp.classifiers.wordvectors` (distilled on first use). Same data in,
byte-identical artefact out (fixed split seed, deterministic solvers, fixed zip metadata).

Each head is a logistic regression over three kinds of input, all linear in the feature
counts of a text (and so folded into one weight per hashed column before saving):
- hashed word unigrams and bigrams (and, for hate and offensive, character 3-5-grams inside
  words) seen in at least two training texts;
- the sum of the text's word vectors (MiniLM distilled by model2vec): words never seen in
  training still carry meaning, which is what holds up on newer data;
- the sum of VADER's positive and negative lexicon valences of its words.

- sentiment: 3 classes, SemEval 2013-2016 tweets minus every copy of a TweetEval
  validation tweet;
- hate: TweetEval hate (HatEval 2019) train plus Davidson et al. 2017 (class 0 = hate);
- offensive: TweetEval offensive (OffensEval 2019) train plus Davidson et al. (hate or
  offensive = offensive).

Regularisation strength and decision thresholds are chosen on a held-out tenth of the
training data, never on the TweetEval validation splits (scored by `evaluate`) and never on
any test split.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamapp.classifiers.datasets import (
    Labelled,
    default_data_dir,
    read_davidson,
    read_semeval_sentiment,
    read_split,
    without_overlap,
)
from streamapp.classifiers.features import HashedFeatures, words_of
from streamapp.classifiers.linear import Head, LinearHeads
from streamapp.classifiers.metrics import macro_f1, macro_recall
from streamapp.classifiers.offline import HEADS_FILE, MODELS_DIR
from streamapp.classifiers.wordvectors import WordVectors, load_or_distil

MODEL_VERSION = "6"
SEED = 20261128
BITS = 20
#: Single words in columns of their own (see `HashedFeatures.word_bits`): in v4 they shared
#: the 2**20 columns, and a bigram or character n-gram hashed into a word's column carried
#: that word's folded vector weight in serving, which training never saw.
WORD_BITS = 19
#: Character n-grams inside words, for the hate and offensive heads: slurs and insults come
#: misspelt, starred out and run together, and the shift-robust estimate rose with them
#: (hate 38.5 -> 41.9, offensive 67.8 -> 68.6); sentiment's fell (60.8 -> 59.1), so its
#: head reads words only.
CHAR_SIZES = (3, 4, 5)
SENTIMENT_LABELS = ["negative", "neutral", "positive"]
THRESHOLDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(13))  # 0.2 .. 0.8
# Word vectors are unit length and lexicon valences at most 4: scaled so that they compete
# with the n-gram weights under one L2 penalty.
VECTOR_SCALE = 1.0
LEXICON_SCALE = 0.5


def split_off(data: Labelled, fraction: float = 0.1) -> tuple[Labelled, Labelled]:
    order = list(range(len(data[0])))
    random.Random(SEED).shuffle(order)
    cut = int(len(order) * fraction)
    held, kept = order[:cut], order[cut:]

    def pick(idx: list[int]) -> Labelled:
        return [data[0][i] for i in idx], [data[1][i] for i in idx]

    return pick(kept), pick(held)


def join(*parts: Labelled) -> Labelled:
    return [t for p in parts for t in p[0]], [y for p in parts for y in p[1]]


EMOTICON_VALENCE_FROM = {
    "emosmile": ":)",
    "emolaugh": ":d",
    "emowink": ";)",
    "emotongue": ":p",
    "emofrown": ":(",
    "emocry": ":'(",
    "emounsure": ":/",
    "emoheart": "<3",
}


def vader_lexicon() -> dict[str, float]:
    """VADER's word valences (-4 .. 4), read from the vaderSentiment wheel's own file."""
    from importlib import resources

    text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text("utf-8")
    out = {}
    for line in text.splitlines():
        word, _, rest = line.partition("\t")
        if rest:
            out[word] = float(rest.split("\t")[0])
    # The featuriser turns emoticons into words (`features._emoticon_word`): each gets the
    # valence VADER gives its plainest spelling.
    for name, emoticon in EMOTICON_VALENCE_FROM.items():
        out[name] = out[emoticon]
    return out


@dataclass
class Design:
    """How texts become the training matrix, and how its weights fold back into columns."""

    features: HashedFeatures
    #: Columns kept as n-gram features (seen in at least two training texts).
    kept: npt.NDArray[np.bool_]
    #: Per column: the extra inputs its word brings (word vector, lexicon), n_features x k
    #: (a sparse matrix: only the columns of known words have a row).
    word_inputs: Any

    def matrix(self, texts: Sequence[str]):  # -> scipy csr_matrix
        from scipy.sparse import csr_matrix, diags, hstack

        x = self.features.matrix(texts)
        x_kept = x @ diags(self.kept.astype(np.float64))
        # Every occurrence in a word's column, as serving sums its folded weight.
        return hstack([x_kept, csr_matrix(x @ self.word_inputs)]).tocsr()

    def fold(self, coef: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """Weights over the design's inputs -> one weight per hashed column."""
        n = self.features.n_features
        ngram, extra = coef[:, :n], coef[:, n:]
        folded = ngram * self.kept + np.asarray((self.word_inputs @ extra.T).T)
        return folded.astype(np.float32)


def build_design(features: HashedFeatures, texts: Sequence[str], vectors: WordVectors) -> Design:
    df = np.zeros(features.n_features, dtype=np.int64)
    occ = features.occurrences(texts)
    pairs = np.unique(occ.rows * features.n_features + occ.cols)
    np.add.at(df, pairs % features.n_features, 1)
    lexicon = vader_lexicon()
    words = sorted(set(words_of(texts)) | set(vectors.vocabulary) | set(lexicon))
    columns = features.word_columns(words)
    keep = columns >= 0
    words = [w for w, k in zip(words, keep, strict=True) if k]
    columns = columns[keep]
    valence = np.array([lexicon.get(w, 0.0) for w in words])
    inputs = np.hstack(
        [
            vectors(words) * VECTOR_SCALE,
            np.stack([np.maximum(valence, 0), np.maximum(-valence, 0)], axis=1) * LEXICON_SCALE,
        ]
    )
    # Words sharing a column (hash collisions) share the mean of their inputs.
    from scipy.sparse import csr_matrix

    counts = np.bincount(columns, minlength=features.n_features)
    table = csr_matrix(
        (np.ones(len(columns)) / counts[columns], (columns, np.arange(len(columns)))),
        shape=(features.n_features, len(columns)),
    ) @ csr_matrix(inputs)
    return Design(features=features, kept=df >= 2, word_inputs=table.tocsr())


def _logistic(c: float, binary: bool):
    """liblinear: deterministic and, over a million sparse columns, minutes faster than
    lbfgs; several classes are one-vs-rest (their scores go through a softmax in serving)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    clf = LogisticRegression(
        C=c, max_iter=3000, class_weight="balanced", solver="liblinear", random_state=0
    )
    return clf if binary else OneVsRestClassifier(clf)


def _coef(clf) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if hasattr(clf, "estimators_"):
        return (
            np.vstack([e.coef_ for e in clf.estimators_]),
            np.concatenate([e.intercept_ for e in clf.estimators_]),
        )
    return clf.coef_, clf.intercept_


@dataclass
class Fitted:
    coef: npt.NDArray[np.float64]  # outputs x design columns
    intercepts: npt.NDArray[np.float64]
    head: Head


def fit_binary(
    name: str,
    train: Labelled,
    tune_on: Labelled,
    vectors: WordVectors,
    c_grid: tuple[float, ...] = (0.5, 1.0, 2.0),
    features: HashedFeatures | None = None,
) -> tuple[Fitted, Design]:
    """Choose C and threshold on `tune_on` (held out of `train`), then refit on both."""
    features = features or HashedFeatures(bits=BITS, char_sizes=CHAR_SIZES, word_bits=WORD_BITS)
    design = build_design(features, train[0], vectors)
    x, x_tune = design.matrix(train[0]), design.matrix(tune_on[0])
    best: tuple[float, float, float] | None = None
    for c in c_grid:
        probs = _logistic(c, True).fit(x, train[1]).predict_proba(x_tune)[:, 1]
        for threshold in THRESHOLDS:
            f1 = macro_f1(tune_on[1], [int(p >= threshold) for p in probs], labels=[0, 1])
            if best is None or f1 > best[0]:
                best = (f1, c, threshold)
    assert best is not None
    f1, c, threshold = best
    everything = join(train, tune_on)
    design = build_design(features, everything[0], vectors)
    clf = _logistic(c, True).fit(design.matrix(everything[0]), everything[1])
    print(f"{name}: C={c} threshold={threshold} held-out macro-F1={f1:.4f}")
    head = Head(
        name=name,
        labels=["not-" + name, name],
        threshold=threshold,
        metrics={"heldout_macro_f1": round(f1, 4), "C": c},
        char_ngrams=bool(features.char_sizes),
    )
    return Fitted(*_coef(clf), head), design


def fit_sentiment(
    train: Labelled,
    tune_on: Labelled,
    vectors: WordVectors,
    c_grid: tuple[float, ...] = (0.5, 2.0),
) -> tuple[Fitted, Design]:
    features = HashedFeatures(bits=BITS, word_bits=WORD_BITS)
    design = build_design(features, train[0], vectors)
    x, x_tune = design.matrix(train[0]), design.matrix(tune_on[0])
    best: tuple[float, float] | None = None
    for c in c_grid:
        pred = _logistic(c, False).fit(x, train[1]).predict(x_tune)
        recall = macro_recall(tune_on[1], [int(p) for p in pred], labels=[0, 1, 2])
        print(f"sentiment: C={c} held-out macro-recall={recall:.4f}")
        if best is None or recall > best[0]:
            best = (recall, c)
    assert best is not None
    recall, c = best
    everything = join(train, tune_on)
    design = build_design(features, everything[0], vectors)
    clf = _logistic(c, False).fit(design.matrix(everything[0]), everything[1])
    head = Head(
        name="sentiment",
        labels=SENTIMENT_LABELS,
        metrics={"heldout_macro_recall": round(recall, 4), "C": c},
    )
    return Fitted(*_coef(clf), head), design


def assemble(parts: Sequence[tuple[Fitted, Design]]) -> LinearHeads:
    weights = np.vstack([design.fold(fitted.coef) for fitted, design in parts])
    # Every head hashes words alike; the character n-grams are those of the heads reading
    # them (one set for all: the batch's features are made once).
    char_sizes = {d.features.char_sizes for _, d in parts if d.features.char_sizes}
    if len(char_sizes) > 1:
        raise ValueError(f"heads disagree on character n-grams: {char_sizes}")
    return LinearHeads(
        version=MODEL_VERSION,
        features=HashedFeatures(
            bits=parts[0][1].features.bits,
            char_sizes=char_sizes.pop() if char_sizes else (),
            word_bits=parts[0][1].features.word_bits,
        ),
        heads=[fitted.head for fitted, _ in parts],
        weights=weights,
        intercepts=np.concatenate([fitted.intercepts for fitted, _ in parts]).astype(np.float64),
    )


@dataclass(frozen=True)
class Corpora:
    sentiment: Labelled
    hate: Labelled
    offensive: Labelled
    davidson_hate: Labelled
    davidson_offensive: Labelled

    @classmethod
    def read(cls, root: Path) -> Corpora:
        val_texts = read_split(root, "sentiment", "val")[0]
        semeval, dropped = without_overlap(read_semeval_sentiment(root), val_texts)
        print(f"sentiment: {len(semeval[0])} training tweets ({dropped} copies of val dropped)")
        hate, offensive = read_davidson(root)
        return cls(
            sentiment=semeval,
            hate=read_split(root, "hate", "train"),
            offensive=read_split(root, "offensive", "train"),
            davidson_hate=hate,
            davidson_offensive=offensive,
        )


def train_heads(data: Corpora, vectors: WordVectors) -> LinearHeads:
    sentiment = fit_sentiment(*split_off(data.sentiment), vectors)
    hate = fit_binary("hate", *split_off(join(data.hate, data.davidson_hate)), vectors)
    offensive = fit_binary(
        "offensive", *split_off(join(data.offensive, data.davidson_offensive)), vectors
    )
    return assemble([hate, offensive, sentiment])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--word-vectors", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = train_heads(Corpora.read(args.data), load_or_distil(args.word_vectors))
    model.save(args.out / HEADS_FILE)
    size = (args.out / HEADS_FILE).stat().st_size
    print(f"wrote {args.out / HEADS_FILE} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
