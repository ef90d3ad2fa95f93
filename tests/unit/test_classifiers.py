"""The offline classifier and the evaluation metrics."""

from __future__ import annotations

import numpy as np
import pytest

from streamapp.classifiers import create_classifier
from streamapp.classifiers.linear import LinearHeads
from streamapp.classifiers.metrics import macro_f1, macro_recall
from streamapp.classifiers.offline import HEADS_FILE


async def test_offline_classifier_labels_every_text_of_a_batch() -> None:
    clf = create_classifier("offline")
    await clf.start()
    try:
        texts = [
            "I love this, what a wonderful day",
            "this is the worst service I have ever had, I hate it",
            "the meeting is at 5pm",
            "",
        ]
        results = await clf.classify(texts)
    finally:
        await clf.close()
    assert len(results) == len(texts)
    scores = [r.sentiment_score for r in results]
    hate_scores = [r.hate_score for r in results]
    assert None not in scores and None not in hate_scores
    assert results[0].sentiment_label == "positive" and (results[0].sentiment_score or 0) > 0
    assert results[1].sentiment_label == "negative" and (results[1].sentiment_score or 0) < 0
    assert results[2].sentiment_label == "neutral"
    for r in results:
        assert -1.0 <= (r.sentiment_score or 0) <= 1.0 and 0.0 <= (r.hate_score or 0) <= 1.0
        # "hate_speech" is listed exactly when the message is flagged; "offensive" on its own.
        assert r.hate == ("hate_speech" in r.hate_categories)
        assert set(r.hate_categories) <= {"hate_speech", "offensive"}
        assert r.classifier == "offline" and r.classifier_version


def test_packaged_heads_load_and_score_deterministically() -> None:
    model = LinearHeads.load_packaged(HEADS_FILE)
    texts = ["you are all wonderful people", "kill all those dirty immigrants they are vermin"]
    a, b = model.probabilities(texts), model.probabilities(list(texts))
    assert set(a) == {"hate", "offensive", "sentiment"}
    for name in a:
        assert (a[name] == b[name]).all()
    # Binary heads: one probability per text, of the positive class; sentiment a softmax.
    assert a["hate"].shape == (2,) and ((a["hate"] > 0) & (a["hate"] < 1)).all()
    assert a["hate"][1] > a["hate"][0]
    assert a["sentiment"].shape == (2, 3) and abs(a["sentiment"].sum(axis=1) - 1).max() < 1e-9


def test_a_text_scores_the_same_whatever_its_batch() -> None:
    model = LinearHeads.load_packaged(HEADS_FILE)
    texts = ["I love it http://t.co/x", "", "hate\x00them @bob", "sooooo bad!!!", "ok"]
    batch = model.probabilities(texts)
    for i, text in enumerate(texts):
        alone = model.probabilities([text])
        for name in batch:
            assert abs(batch[name][i] - alone[name][0]).max() < 1e-9, (name, text)


def test_macro_f1_and_macro_recall_on_a_hand_made_set() -> None:
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 0, 2]
    # class 0: p=2/3 r=2/3 f=2/3; class 1: p=1/2 r=1/2 f=1/2; class 2: p=r=f=1
    assert macro_f1(gold, pred, [0, 1, 2]) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert macro_recall(gold, pred, [0, 1, 2]) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert macro_f1([0, 1], [1, 0], [0, 1]) == 0.0


def test_each_head_reads_the_features_it_was_trained_on() -> None:
    """A head trained without character n-grams scores as if the model had none; one
    trained with them sees every occurrence (saved and loaded alike)."""
    from streamapp.classifiers.features import HashedFeatures, score
    from streamapp.classifiers.linear import Head

    rng = np.random.default_rng(3)
    words, chars = HashedFeatures(bits=12), HashedFeatures(bits=12, char_sizes=(3, 4))
    weights = rng.standard_normal((4, words.n_features)).astype(np.float32)
    heads = [
        Head("hate", ["not-hate", "hate"], char_ngrams=True),
        Head("sentiment", ["negative", "neutral", "positive"]),
    ]
    model = LinearHeads("t", chars, heads, weights, np.zeros(4))
    texts = ["unbelievably hateful words", "a", "", "sooooo goooood #winning"]
    got = model.probabilities(texts)
    word_only = LinearHeads("t", words, heads, weights, np.zeros(4)).probabilities(texts)
    assert np.allclose(got["sentiment"], word_only["sentiment"])
    assert not np.allclose(got["hate"], word_only["hate"])
    expected = 1 / (1 + np.exp(-score(chars.occurrences(texts), weights[:1])[:, 0]))
    assert np.allclose(got["hate"], expected)
