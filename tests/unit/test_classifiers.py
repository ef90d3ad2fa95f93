"""The offline classifier and the evaluation metrics."""

from __future__ import annotations

import pytest

from streamapp.classifiers import create_classifier
from streamapp.classifiers.linear import LinearModel
from streamapp.classifiers.metrics import macro_f1, macro_recall


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


def test_packaged_models_load_and_score_deterministically() -> None:
    model = LinearModel.load_packaged("hate-lr.json.gz")
    a = model.predict_proba(
        ["you are all wonderful people", "kill all those dirty immigrants they are vermin"]
    )
    b = model.predict_proba(
        ["you are all wonderful people", "kill all those dirty immigrants they are vermin"]
    )
    assert a == b
    # Binary model: one probability per text, of the positive (hateful) class.
    assert all(len(row) == 1 and 0.0 < row[0] < 1.0 for row in a)
    assert a[1][0] > a[0][0]


def test_macro_f1_and_macro_recall_on_a_hand_made_set() -> None:
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 0, 2]
    # class 0: p=2/3 r=2/3 f=2/3; class 1: p=1/2 r=1/2 f=1/2; class 2: p=r=f=1
    assert macro_f1(gold, pred, [0, 1, 2]) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert macro_recall(gold, pred, [0, 1, 2]) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert macro_f1([0, 1], [1, 0], [0, 1]) == 0.0
