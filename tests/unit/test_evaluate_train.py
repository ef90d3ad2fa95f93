"""The evaluation command's metrics on a hand-made set, and reproducible training."""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from streamapp.classifiers.base import Classifier, Langs
from streamapp.classifiers.datasets import default_data_dir, without_overlap
from streamapp.classifiers.evaluate import evaluate, main, report
from streamapp.classifiers.linear import LinearModel
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
    main(["--data", str(data), "--task", "sentiment", "--task", "hate"])
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
        + "\n".join(f'3,0,0,3,2,"{tweet(pos)}"' for _ in range(20))
        + "\n"
    )


def test_training_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="training needs the train extra (scikit-learn)")
    from streamapp.classifiers.train import main as train

    synthetic_data(tmp_path / "data")
    digests = []
    for run in ("a", "b"):
        train(["--data", str(tmp_path / "data"), "--out", str(tmp_path / run)])
        digests.append(
            {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / run).iterdir()}
        )
    assert digests[0] == digests[1]
    assert set(digests[0]) == {"sentiment-lr.json.gz", "hate-lr.json.gz", "offensive-lr.json.gz"}
    model = LinearModel.load(tmp_path / "a" / "sentiment-lr.json.gz")
    assert model.labels == ["negative", "neutral", "positive"] and model.dense


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
