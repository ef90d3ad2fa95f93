"""Offline language identification for messages whose source does not say.

py3langid ships its model inside the wheel (no download) and labels ~16k tweets/s on one
core. Short or mixed texts get low confidence; below the threshold the language stays
unknown rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

# Codes sources use for "no language" (X API: und, and qme/qht/qam/... for media-only posts).
UNKNOWN_CODES = {"", "und", "zxx", "mul", "unknown"}


def normalise_code(code: str | None) -> str | None:
    """`en-US` -> `en`; X API's `q*` pseudo-codes and `und` -> None."""
    if code is None:
        return None
    code = code.strip().lower().replace("_", "-").split("-")[0]
    if code in UNKNOWN_CODES or (len(code) == 3 and code.startswith("q")):
        return None
    return code


class LanguageDetector:
    def __init__(self, min_confidence: float = 0.5) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.min_confidence = min_confidence

    def detect(self, text: str) -> str | None:
        if not text.strip():
            return None
        lang, prob = self._identifier.classify(text)
        return str(lang) if prob >= self.min_confidence else None

    def detect_batch(self, texts: Sequence[str]) -> list[str | None]:
        return [self.detect(t) for t in texts]
