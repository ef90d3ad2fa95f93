"""Tracked terms: the user's own keywords and topics, one list across every source.

`STREAMAPP_TERMS` lists them (comma separated). They drive both ends:

* collection: when a source has no query of its own, it asks for the terms (one X
  filtered-stream rule per term, tagged with it; Jetstream keywords; a NewsAPI `q` that ORs
  them), see `sources/`;
* counting: the worker tags each message with the terms it matches, stored as the document's
  `terms` and counted per term in the windowed tables (`counting.py`).

A message matches a term when one of its rule tags is the term, or its text holds the term as
a whole word or phrase, both ignoring case. Text matching makes the counts the same whatever
the source: NewsAPI articles and Bluesky posts carry no X rule tags. Only listed terms are
counted, so the tables' size stays bounded whatever tags the rules carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

#: Bounds that keep the table values and the matcher small: each term adds a count per label
#: to every table value (see counting.py).
MAX_TERMS = 100
MAX_TERM_LENGTH = 100
#: The table keys' separator (`counting.KEY_SEP`) and the list separator cannot be in a term.
_FORBIDDEN = frozenset("|,")


def parse_terms(value: object) -> list[str]:
    """The terms of a setting: a comma-separated string or a list; blanks dropped, the first
    spelling of a term kept when it repeats in another case. Raises ValueError on a term
    that is too long or has a forbidden character, or too many terms."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        term = " ".join(str(item).split())  # inner runs of whitespace as one space
        if not term or term.casefold() in seen:
            continue
        if len(term) > MAX_TERM_LENGTH:
            raise ValueError(f"term {term[:20]!r}... is longer than {MAX_TERM_LENGTH} characters")
        if _FORBIDDEN & set(term):
            raise ValueError(f"term {term!r} contains '|' (the table separator) or ','")
        seen.add(term.casefold())
        out.append(term)
    if len(out) > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS} terms, got {len(out)}")
    return out


#: A settings field holding terms: read as `parse_terms` reads them (not as JSON).
Terms = Annotated[list[str], NoDecode, BeforeValidator(parse_terms)]


def newsapi_query(terms: Sequence[str]) -> str:
    """NewsAPI's `q` for any of `terms`: each quoted (a phrase stays a phrase), ORed."""
    return " OR ".join(f'"{t}"' for t in terms)


class TermMatcher:
    r"""Which of the tracked terms each message matches (see the module docstring).

    One compiled alternation scans each text once, in C, whatever the number of terms. The
    text is lower-cased first and the pattern has no lookbehind: a case-insensitive pattern
    that starts with `(?<!\w)` cannot skip ahead to a term's first letter and tries every
    position (3x slower; 6% of a loaded worker's CPU with five terms). A hit preceded by a
    word character is checked here instead, and the scan goes on from the next position: the
    same hits as `(?<!\w)(?:terms)(?!\w)` with IGNORECASE (tested).
    """

    def __init__(self, terms: Sequence[str]) -> None:
        self.terms = list(terms)
        self._canonical = {t.casefold(): t for t in self.terms}
        self._pattern: re.Pattern[str] | None = None
        if self.terms:
            # Longest first, so a phrase wins over a term it starts with. A lookahead instead
            # of \b so terms that end with a symbol (c++) match too.
            alternatives = "|".join(
                re.escape(t.lower()).replace(r"\ ", r"\s+")
                for t in sorted(self.terms, key=len, reverse=True)
            )
            self._pattern = re.compile(rf"(?:{alternatives})(?!\w)")

    def __bool__(self) -> bool:
        return bool(self.terms)

    def match(self, text: str, tags: Iterable[str] = ()) -> list[str]:
        """The tracked terms `text` or `tags` hold, each once, in the settings' order."""
        if self._pattern is None:
            return []
        canonical = self._canonical
        found: set[str] = set()
        for tag in tags:
            term = canonical.get(tag.casefold())
            if term is not None:
                found.add(term)
        lowered = text.lower()
        search = self._pattern.search
        hit = search(lowered)
        while hit is not None:
            start = hit.start()
            if start and _is_word_character(lowered[start - 1]):
                hit = search(lowered, start + 1)  # a term may still start inside this hit
                continue
            found.add(canonical[" ".join(hit.group().split()).casefold()])
            hit = search(lowered, hit.end())
        return [t for t in self.terms if t in found] if found else []


def _is_word_character(char: str) -> bool:
    r"""What `\w` matches in a str pattern: letters and digits of any script, and `_`."""
    return char.isalnum() or char == "_"
