"""Tracked terms: the setting, the matcher and the NewsAPI query made from them."""

from __future__ import annotations

import random
import re

import pytest

from streamapp.settings import SettingsError, load_settings
from streamapp.terms import MAX_TERMS, TermMatcher, newsapi_query, parse_terms


def test_parse_terms_drops_blanks_and_case_repeats_and_keeps_the_first_spelling() -> None:
    assert parse_terms(" Climate, AI ,,climate,  net   zero ") == ["Climate", "AI", "net zero"]
    assert parse_terms(["a", "A", "b"]) == ["a", "b"]
    assert parse_terms(None) == [] and parse_terms("") == []


@pytest.mark.parametrize(
    "value", ["a|b", "x" * 101, ",".join(f"t{i}" for i in range(MAX_TERMS + 1))]
)
def test_parse_terms_refuses_what_would_break_the_table_keys_or_bounds(value: str) -> None:
    with pytest.raises(ValueError):
        parse_terms(value)


def test_the_setting_names_the_variable_on_a_bad_term(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_TERMS", "ok,not|ok")
    with pytest.raises(SettingsError, match="STREAMAPP_TERMS"):
        load_settings()
    monkeypatch.setenv("STREAMAPP_TERMS", "Climate,net zero")
    assert load_settings().terms == ["Climate", "net zero"]


def test_matches_whole_words_and_phrases_ignoring_case_in_the_settings_order() -> None:
    m = TermMatcher(["AI", "net zero", "#COP29", "c++"])
    assert m.match("Net  Zero by 2050? ai says so") == ["AI", "net zero"]
    assert m.match("said nothing") == []
    assert m.match("FAIR and chair: no AI inside words") == ["AI"]
    assert m.match("en route to #cop29, writing C++") == ["#COP29", "c++"]
    assert m.match("netzero is one word") == []


def test_a_rule_tag_is_a_match_even_when_the_text_does_not_say_it() -> None:
    m = TermMatcher(["climate", "ai"])
    assert m.match("hot today", tags=["Climate", "untracked-tag"]) == ["climate"]
    assert m.match("AI again", tags=["ai"]) == ["ai"]  # once, not twice


def test_a_matcher_without_terms_matches_nothing() -> None:
    m = TermMatcher([])
    assert not m and m.match("anything", tags=["tag"]) == []


def test_a_longer_phrase_wins_over_a_term_it_starts_with() -> None:
    m = TermMatcher(["net", "net zero"])
    assert m.match("net zero") == ["net zero"]
    assert m.match("net gains, net zero") == ["net", "net zero"]


def test_newsapi_query_quotes_each_term_and_ors_them() -> None:
    assert newsapi_query(["climate", "net zero"]) == '"climate" OR "net zero"'


def test_a_hit_inside_a_word_does_not_hide_a_term_that_starts_within_it() -> None:
    m = TermMatcher(["net zero", "zero", "aa"])
    assert m.match("xnet zero") == ["zero"]
    assert m.match("aaa baa aa") == ["aa"]
    assert m.match("_zero 0zero zero_") == []


def test_the_same_hits_as_one_case_insensitive_lookbehind_pattern() -> None:
    """The pattern the matcher stands for, scanned the slow way, on texts made to cross
    every boundary: word characters of other scripts, digits, underscores, symbols."""
    terms = ["ai", "net zero", "#cop29", "c++", "zero", "über", "élan", "x_y", "n"]
    alternatives = "|".join(
        re.escape(t).replace(r"\ ", r"\s+") for t in sorted(terms, key=len, reverse=True)
    )
    reference = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    canonical = {t.casefold(): t for t in terms}
    pieces = [
        *terms,
        "AI",
        "NET  ZERO",
        "Über",
        "ÉLAN",
        "#COP29",
        "C++",
        "_",
        "9",
        "é",
        "ß",
        " ",
        " ",
        " ",
        ",",
        "#",
        "+",
        "net",
        "zer",
        "o",
        "a",
        "i",
        "Ñ",
        "日本",
    ]
    rng = random.Random(7)
    m = TermMatcher(terms)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        found = {canonical[" ".join(h.split()).casefold()] for h in reference.findall(text)}
        assert m.match(text) == [t for t in terms if t in found], text
