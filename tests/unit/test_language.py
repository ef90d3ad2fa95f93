"""Language codes from sources and offline detection."""

from __future__ import annotations

import pytest

from streamapp.language import LanguageDetector, normalise_code


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("pt_BR", "pt"),
        ("DE", "de"),
        ("und", None),
        ("qme", None),
        ("", None),
        (None, None),
    ],
)
def test_source_codes_are_normalised(code: str | None, expected: str | None) -> None:
    assert normalise_code(code) == expected


def test_detector_names_clear_languages_and_abstains_on_noise() -> None:
    detector = LanguageDetector()
    texts = [
        "I can't believe how good this new album is, listening all day",
        "Das Wetter in Berlin ist heute wirklich schön, wir gehen spazieren",
        "Le gouvernement a annoncé de nouvelles mesures pour les écoles",
        "El partido de fútbol de anoche fue increíble, qué golazo",
        "",
        "lol ok",
    ]
    assert detector.detect_batch(texts) == ["en", "de", "fr", "es", None, None]
