"""The evaluation command's metrics on a hand-made set, and reproducible training."""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streamapp.classifiers.base import Classifier, Langs
from streamapp.classifiers.datasets import default_data_dir, without_overlap
from streamapp.classifiers.evaluate import evaluate, main, report
from streamapp.classifiers.linear import LinearHeads
from streamapp.models import Analysis


def write_split(root: Path, task: str, split: str, rows: Sequence[tuple[str, int]]) -> None:
    base = root / "tweeteval" / task
    base.mkdir(parents=True, exist_ok=True)
    (base / f"{split}_text.txt").write_text("\n".join(t for t, _ in rows) + "\n")
    (base / f"{split}_labels.txt").write_text("\n".join(str(y) for _, y in rows) + "\n")


class Keywords(Classifier):
    """Says what the words say: 'hate' -> hateful, 'rude' -> offensive, 'good'/'bad'."""

    name = "keywords"
    version = "test"

    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        out = []
        for t in texts:
            label = "positive" if "good" in t else "negative" if "bad" in t else "neutral"
            out.append(
                Analysis(
                    sentiment_label=label,
                    sentiment_score=0.0,
                    hate="hate" in t,
                    hate_score=1.0 if "hate" in t else 0.0,
                    hate_categories=["offensive"] if "rude" in t else [],
                    classifier=self.name,
                    classifier_version=self.version,
                )
            )
        return out


async def test_metrics_on_a_hand_made_validation_set(tmp_path: Path) -> None:
    # hate gold 1,1,0,0 / predicted 1,0,1,0: each class P=R=F1=1/2 -> macro-F1 0.5
    write_split(tmp_path, "hate", "val", [("hate a", 1), ("b", 1), ("hate c", 0), ("d", 0)])
    # offensive gold 1,0,0 / predicted 1,1,0: class 1 P=1/2 R=1 F=2/3; class 0 P=1 R=1/2
    # F=2/3 -> macro-F1 2/3
    write_split(tmp_path, "offensive", "val", [("rude", 1), ("rude too", 0), ("fine", 0)])
    # sentiment gold neg,neg,neu,pos,pos / predicted neg,pos,neu,pos,neu:
    # recall neg 1/2, neu 1, pos 1/2 -> macro-recall 2/3
    write_split(
        tmp_path,
        "sentiment",
        "val",
        [("bad", 0), ("good?", 0), ("meh", 1), ("good", 2), ("ok", 2)],
    )
    results = {r.task: r for r in await evaluate(Keywords(), tmp_path, batch=2)}
    assert results["hate"].score == pytest.approx(0.5)
    assert results["offensive"].score == pytest.approx(2 / 3)
    assert results["sentiment"].score == pytest.approx(2 / 3)
    assert results["sentiment"].per_class["negative"] == pytest.approx((1 / 1, 1 / 2, 2 / 3))
    assert [r.n for r in results.values()] == [4, 3, 5]
    text = report(list(results.values()), Keywords())
    rows = {line.split()[0]: line.split()[1:3] for line in text.splitlines()[1:] if line[0] != " "}
    assert rows == {
        "hate": ["macro-F1", "50.0"],
        "offensive": ["macro-F1", "66.7"],
        "sentiment": ["macro-recall", "66.7"],
    }
    # Classes by name, as TweetEval's mapping.txt gives them, not as ids.
    classes = [line.split()[0] for line in text.splitlines() if line.startswith("    ")]
    assert classes[-3:] == ["negative", "neutral", "positive"]
    assert classes[:2] == ["not-hate", "hate"]


def test_missing_data_names_the_setting_and_the_origin(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tmp_path)])
    assert "STREAMAPP_TRAINING_DATA" in str(exc.value) and "cardiffnlp/tweeteval" in str(exc.value)


def test_command_scores_the_packaged_model_on_the_real_splits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = default_data_dir()
    if not (data / "tweeteval").is_dir():
        pytest.skip(f"the labelled data is not beside this checkout ({data})")
    main(["--data", str(data), "--task", "sentiment", "--task", "hate", "--no-shift"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if not line.startswith(" ")}
    assert set(lines) == {"hate", "sentiment"}
    for line in lines.values():
        score = float(line.split()[2])
        assert 0.0 < score < 100.0


def test_training_copies_of_validation_tweets_are_dropped() -> None:
    train = (["Great game http://t.co/x @bob", "another tweet", "GREAT game!!"], [2, 1, 2])
    kept, dropped = without_overlap(train, ["great game @alice http://t.co/y"])
    assert kept == (["another tweet", "GREAT game!!"], [1, 2]) and dropped == 1


def synthetic_data(root: Path) -> None:
    rng = random.Random(3)
    pos, neg, neu = ["love", "great", "happy"], ["awful", "sad", "angry"], ["meeting", "bus"]
    filler = ["the", "a", "today", "we", "you", "with", "at", "on"]

    def tweet(words: list[str]) -> str:
        return " ".join([*rng.sample(filler, 3), rng.choice(words), rng.choice(words)])

    rows = [(tweet(w), y) for _ in range(80) for w, y in ((neg, 0), (neu, 1), (pos, 2))]
    (root / "semeval2017").mkdir(parents=True)
    (root / "semeval2017" / "sentiment_train.tsv").write_text(
        "\n".join(f"{y}\t{t}" for t, y in rows) + "\n"
    )
    write_split(root, "sentiment", "val", rows[:30])
    for task in ("hate", "offensive"):
        rows2 = [(tweet(neg), 1) for _ in range(60)] + [(tweet(pos + neu), 0) for _ in range(60)]
        write_split(root, task, "train", rows2)
        write_split(root, task, "val", rows2[:20])
    (root / "davidson2017").mkdir()
    (root / "davidson2017" / "labeled_data.csv").write_text(
        "count,hate_speech,offensive_language,neither,class,tweet\n"
        + "\n".join(f'3,3,0,0,0,"{tweet(neg)}"' for _ in range(20))
        + "\n"
        + "\n".join(f'3,0,0,3,2,"{tweet(pos + neu)}"' for _ in range(20))
        + "\n"
    )


def tiny_word_vectors(directory: Path) -> Path:
    """A model2vec model over a word-level vocabulary: what `wordvectors.distil` makes from
    MiniLM, small enough for a unit test."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = ["[UNK]", "[PAD]", "love", "great", "happy", "awful", "sad", "angry", "joy"]
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((len(vocab), 8)).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tokenizer).save_pretrained(str(directory))
    return directory


def test_training_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="training needs the train extra (scikit-learn)")
    from streamapp.classifiers.train import main as train

    synthetic_data(tmp_path / "data")
    vectors = tiny_word_vectors(tmp_path / "vectors")
    digests = []
    for run in ("a", "b"):
        train(
            [
                "--data", str(tmp_path / "data"),
                "--out", str(tmp_path / run),
                "--word-vectors", str(vectors),
            ]
        )  # fmt: skip
        digests.append(
            {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / run).iterdir()}
        )
    assert digests[0] == digests[1]
    assert set(digests[0]) == {"offline-heads.zip"}
    model = LinearHeads.load(tmp_path / "a" / "offline-heads.zip")
    assert [h.name for h in model.heads] == ["hate", "offensive", "sentiment"]
    assert model.head("sentiment").labels == ["negative", "neutral", "positive"]
    assert model.features.char_sizes == (3, 4, 5)
    assert [h.char_ngrams for h in model.heads] == [True, True, False]
    # Learnt from the synthetic words, and "joy" (never in training, but with a vector):
    probs = model.probabilities(["so happy with you", "awful and angry", "we sad today"])
    assert probs["sentiment"].argmax(axis=1).tolist() == [2, 0, 0]
    assert probs["hate"][1] > 0.5 > probs["hate"][0]


def test_shift_estimates_retrain_across_sources_and_years(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="training needs the train extra (scikit-learn)")
    from streamapp.classifiers.shift import report as shift_report
    from streamapp.classifiers.shift import shift_estimates
    from streamapp.classifiers.wordvectors import WordVectors

    synthetic_data(tmp_path / "data")
    vectors = WordVectors(tiny_word_vectors(tmp_path / "vectors"))
    # 240 sentiment rows: the first 150 are "older" (less the 30 copies of validation
    # tweets among them), the last 60 "newest".
    results = shift_estimates(tmp_path / "data", vectors, older_end=150, newest_start=180)
    got = {(r.task, r.direction): (r.n_train, r.n_test) for r in results}
    assert got == {
        ("hate", "HatEval -> Davidson"): (140, 40),
        ("hate", "Davidson -> HatEval"): (40, 140),
        ("offensive", "OffensEval -> Davidson"): (140, 40),
        ("offensive", "Davidson -> OffensEval"): (40, 140),
        ("sentiment", "SemEval 2013-14 -> 2016"): (120, 60),
    }
    # The synthetic words decide the labels in every source, so the recipe transfers.
    assert all(r.score > 0.9 for r in results), results
    text = shift_report(results)
    assert "hate       mean of both directions" in text and "SemEval 2013-14 -> 2016" in text


async def test_offline_models_load_and_classify_with_the_network_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))  # type: ignore[arg-type]
    from streamapp.classifiers.offline import OfflineClassifier

    clf = OfflineClassifier()
    try:
        (result,) = await clf.classify(["what a lovely morning"], ["en"])
    finally:
        await clf.close()
    assert result.sentiment_label == "positive" and attempts == []


def test_served_scores_are_the_scores_training_fitted(tmp_path: Path) -> None:
    """Folding the word vectors into column weights loses nothing: the served logits equal
    the fitted model's on its own design matrix. With few columns every character n-gram
    shares a column with some word, so this fails if their columns can meet."""
    pytest.importorskip("sklearn", reason="training needs the train extra (scikit-learn)")
    from streamapp.classifiers.features import HashedFeatures
    from streamapp.classifiers.train import assemble, build_design, fit_binary, split_off
    from streamapp.classifiers.wordvectors import WordVectors

    synthetic_data(tmp_path / "data")
    vectors = WordVectors(tiny_word_vectors(tmp_path / "vectors"))
    rng = random.Random(9)
    words = ["love", "sad", "joy", "angry", "we", "today", "bus", "awfully", "happyness"]
    texts = [" ".join(rng.choices(words, k=6)) for _ in range(60)]
    labels = [int("sad" in t or "angry" in t) for t in texts]
    features = HashedFeatures(bits=6, char_sizes=(3, 4, 5), word_bits=6)
    design = build_design(features, texts, vectors)
    assert design.word_inputs.nnz > 0
    occ = features.occurrences(texts)
    word_cols = set(occ.cols[: occ.n_unigrams].tolist())
    assert word_cols.isdisjoint(occ.cols[occ.n_unigrams :].tolist())

    fitted, design = fit_binary("hate", *split_off((texts, labels)), vectors, features=features)
    model = assemble([(fitted, design)])
    fitted_logits = np.asarray(design.matrix(texts) @ fitted.coef.T)[:, 0] + fitted.intercepts[0]
    served = model.probabilities(texts)["hate"]
    np.testing.assert_allclose(served, 1 / (1 + np.exp(-fitted_logits)), rtol=1e-5)
