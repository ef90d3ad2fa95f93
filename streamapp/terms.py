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
    """Which of the tracked terms each message matches (see the module docstring).

    One compiled alternation scans each text once, in C, whatever the number of terms.
    """

    def __init__(self, terms: Sequence[str]) -> None:
        self.terms = list(terms)
        self._canonical = {t.casefold(): t for t in self.terms}
        self._pattern: re.Pattern[str] | None = None
        if self.terms:
            # Longest first, so a phrase wins over a term it starts with. Lookarounds instead
            # of \b so terms that start or end with a symbol (#tag, c++) match too.
            alternatives = "|".join(
                re.escape(t).replace(r"\ ", r"\s+")
                for t in sorted(self.terms, key=len, reverse=True)
            )
            self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def __bool__(self) -> bool:
        return bool(self.terms)

    def match(self, text: str, tags: Iterable[str] = ()) -> list[str]:
        """The tracked terms `text` or `tags` hold, each once, in the settings' order."""
        if self._pattern is None:
            return []
        found = {self._canonical[t.casefold()] for t in tags if t.casefold() in self._canonical}
        for hit in self._pattern.findall(text):
            found.add(self._canonical[" ".join(hit.split()).casefold()])
        return [t for t in self.terms if t in found] if found else []
