"""Tiny random-weight BERT classifiers and their tokenizer, built and saved locally (no
download), for the transformers backend's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (  # type: ignore[attr-defined] # lazily exported names
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
)

# The tiny models' vocabulary; anything else in a text becomes [UNK].
WORDS_TEXT = (
    "i you we they he she it is are was be not no very so the a an and or but this that these "
    "people day night food service movie game team city news today love like great good nice "
    "happy best awesome wonderful hate bad awful worst terrible sad angry stupid ugly kill "
    "dirty vermin go back home all them us our your their with for of to in on at"
)
MAX_LENGTH = 16
HATE_ID2LABEL = {0: "normal", 1: "hateful"}


@dataclass
class TinyModel:
    folder: Path
    tokenizer: Any
    model: BertForSequenceClassification

    def probs(self, text: str) -> list[float]:
        """Softmax of one text on its own (no padding), computed without the backend."""
        enc = self.tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.no_grad():
            return torch.softmax(self.model(**enc).logits[0], dim=-1).tolist()


def tiny_bert(folder: Path, vocab_file: Path, seed: int, **labels: Any) -> TinyModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab_file.read_text().split()),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        # Wide random weights, so different texts get clearly different probabilities.
        initializer_range=1.0,
        **labels,
    )
    model = BertForSequenceClassification(config).eval()
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TinyModel(folder, tokenizer, model)


def build_tiny_models(root: Path) -> dict[str, TinyModel]:
    """A 3-label sentiment model (LABEL_0/1/2) and a 2-label hate model under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    vocab = root / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", *WORDS_TEXT.split()]) + "\n"
    )
    return {
        # Default id2label (LABEL_0/1/2): read through the default sentiment mapping.
        "sentiment": tiny_bert(root / "sentiment", vocab, seed=1, num_labels=3),
        "hate": tiny_bert(
            root / "hate",
            vocab,
            seed=2,
            num_labels=2,
            id2label=HATE_ID2LABEL,
            label2id={v: k for k, v in HATE_ID2LABEL.items()},
        ),
    }
