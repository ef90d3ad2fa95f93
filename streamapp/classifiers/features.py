"""Hashed word features for a whole batch at once, in NumPy.

The offline heads are linear models over word unigrams and bigrams of normalised text.
scikit-learn's vectorisers make those one Python string at a time, and the VADER scores the
sentiment head used to read cost as much again: together ~5,000 tweets/s, a quarter of the
20,000 messages/s the pipeline budgets for all three heads. This module makes the features of
a batch with array operations instead:

- the batch is normalised as one string (a handful of regex passes, not one per text);
- its code points go into one array; each word is a span of it, hashed in O(1) from prefix
  sums of a polynomial hash (arithmetic mod 2**64, where the base is invertible), so the same
  word hashes alike wherever it occurs; a bigram combines its two words' hashes; a character
  n-gram inside a word is a span too, hashed the same way;
- a hash picks one of `2**bits` columns (the hashing trick: no vocabulary to ship); single
  words may have `2**word_bits` columns of their own, so that what training folds into a
  word's column (its word vector) is never summed for a bigram or n-gram hashed there too.

The output is the (row, column) pair of every occurrence: unigrams, bigrams, then character
n-grams (a head trained on words alone reads the first two, `Occurrences.words_only`).
Training turns it into a SciPy matrix; serving sums weight rows with `numpy.bincount`, so a
linear score costs one gather. Both see the same features because they share this code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# \x00 is `_SEP`: a link never runs into the next text.
_URL = re.compile(r"https?://[^\s\x00]+|www\.[^\s\x00]+")
_MENTION = re.compile(r"@\w+")
_HTML_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#\d+);")
# Emoticons become words: the tokeniser drops ":", "(" and ")", and "&lt;" (the HTML entity
# of the "<" of "<3"), so ":)" (82% positive in the SemEval training tweets) and ":(" would
# vanish. Matched after lower-casing and after links are gone (the ":/" of "http://"); not
# after a digit, ":" or "/" (times, ratios), never with a letter or digit straight after;
# not the mirrored "(:" and "):", which a closing bracket before a colon also spells. The
# pattern starts with a character set so that `re` skips to the candidates (a lookahead or
# named groups first made normalising 2-8 times slower); the mouth names the word.
_EMOTICON = re.compile(
    r"[:;=<&](?<![\d:/].)(?:['\-^o]?[)\]}>(\[{<dpb/\\|]|(?<=<)3|(?<=&)lt;3)(?![a-z\d])"
)
_EMOTICON_MOUTHS = {
    **dict.fromkeys(")]}>", "emosmile"),
    "d": "emolaugh",
    **dict.fromkeys("pb", "emotongue"),
    **dict.fromkeys("([{<", "emofrown"),
    **dict.fromkeys("/\\|", "emounsure"),
    "3": "emoheart",
}
# "sooooo" and "so" should share features.
_REPEAT = re.compile(r"(.)\1{2,}")
# Separates texts in the joined batch (not whitespace, so never collapsed into a space).
_SEP = "\x00"

_BASE = np.uint64(0x100000001B3)  # odd, so invertible mod 2**64
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)
# One salt per feature family, so a bigram never lands where its first word would.
_SALT_WORD = np.uint64(0x51ED270B27A3C6D1)
_SALT_BIGRAM = np.uint64(0x2545F4914F6CDD1D)
_SALT_CHARS = {n: np.uint64((0x9E3779B97F4A7C15 * (n + 7)) % 2**64) for n in range(1, 10)}
# A character n-gram at the start or the end of its word is a feature of its own ("ing"
# ending a word is not "ing" inside one).
_SALT_PREFIX = np.uint64(0x243F6A8885A308D3)
_SALT_SUFFIX = np.uint64(0x13198A2E03707344)

# Punctuation that carries no signal as a token of its own.
_DROPPED = np.array([ord(c) for c in '#.,:;"()'], dtype=np.uint32)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


def normalise_batch(texts: Sequence[str]) -> str:
    """The batch as one string, texts separated by `_SEP`: lower-case,
    whitespace collapsed, links -> `httpurl`, mentions -> `@user`, HTML entities dropped.
    (Runs of one character are cut to two later, on the code points.)"""
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:  # a text holds the separator itself
        joined = _SEP.join(t.replace(_SEP, " ") for t in texts)
    # str.split() knows the same whitespace as the regex `\s`, three times faster.
    joined = " ".join(joined.split()).lower()
    joined = _URL.sub(" httpurl ", joined)
    joined = _EMOTICON.sub(_emoticon_word, joined)
    joined = _MENTION.sub(" @user ", joined)
    return _HTML_ENTITY.sub(" ", joined)


def _emoticon_word(match: re.Match[str]) -> str:
    text = match.group()
    if text[0] == ";" and text[-1] in ")]d":
        return " emowink "
    if text[-1] == "(" and "'" in text:
        return " emocry "
    return f" {_EMOTICON_MOUTHS[text[-1]]} "


def code_points(texts: Sequence[str]) -> npt.NDArray[np.uint32]:
    """Normalised code points of the batch; "sooooo" and "so" share features as "soo"."""
    cps = np.frombuffer(normalise_batch(texts).encode("utf-32-le"), dtype=np.uint32)
    repeat = np.zeros(len(cps), dtype=bool)
    repeat[2:] = (cps[2:] == cps[1:-1]) & (cps[2:] == cps[:-2])
    return cps[~repeat]


@dataclass(frozen=True)
class Occurrences:
    """Feature occurrences of a batch: text `rows[k]` has feature `cols[k]` once more.
    The first `n_unigrams` occurrences are single words, then bigrams up to `n_words`, then
    character n-grams."""

    rows: I64
    cols: I64
    n_texts: int
    n_features: int
    n_unigrams: int
    #: Word unigrams and bigrams (the rest are character n-grams).
    n_words: int

    def words_only(self) -> Occurrences:
        """The word features alone, as a head trained without character n-grams sees them."""
        if self.n_words == len(self.rows):
            return self
        end = self.n_words
        return Occurrences(
            self.rows[:end], self.cols[:end], self.n_texts, self.n_features, self.n_unigrams, end
        )


@dataclass(frozen=True)
class HashedFeatures:
    """Word unigrams and bigrams, and the character n-grams of `char_sizes` inside words
    longer than n, hashed into `2**bits` columns. Character n-grams give a word never seen
    in training (a misspelling, a new compound, a hashtag run together) the weights of
    its parts."""

    bits: int = 20
    char_sizes: tuple[int, ...] = ()
    #: Single words get `2**word_bits` columns of their own after the shared ones (0: they
    #: share them). Training folds each word's vector into its column's weight; in a shared
    #: column a bigram or character n-gram hashed there would carry that vector too.
    word_bits: int = 0

    @property
    def n_features(self) -> int:
        return (1 << self.bits) + ((1 << self.word_bits) if self.word_bits else 0)

    def occurrences(self, texts: Sequence[str]) -> Occurrences:
        if not texts:
            empty = np.zeros(0, dtype=np.int64)
            return Occurrences(empty, empty, 0, self.n_features, 0, 0)
        cps = code_points(texts)
        doc = np.cumsum(cps == ord(_SEP), dtype=np.int64)
        prefix, power = _prefix_hash(cps)
        starts, ends = _word_spans(cps)
        words = _span_hash(prefix, power, starts, ends)
        rows = doc[starts]
        # Adjacent words of the same text form a bigram.
        same = rows[1:] == rows[:-1]
        with np.errstate(over="ignore"):
            bigrams = (words[:-1] * _MIX + words[1:])[same]
        row_parts = [rows, rows[1:][same]]
        hash_parts = [words ^ _SALT_WORD, bigrams ^ _SALT_BIGRAM]
        n_words = len(words) + len(bigrams)
        for n in self.char_sizes:
            owner, hashes = _char_grams(prefix, power, starts, ends, n)
            row_parts.append(rows[owner])
            hash_parts.append(hashes)
        if self.word_bits:
            word_cols = _bucket(hash_parts[0], self.word_bits) + (1 << self.bits)
        else:
            word_cols = self._column(hash_parts[0])
        return Occurrences(
            rows=np.concatenate(row_parts),
            cols=np.concatenate([word_cols, self._column(np.concatenate(hash_parts[1:]))]),
            n_texts=len(texts),
            n_features=self.n_features,
            n_unigrams=len(words),
            n_words=n_words,
        )

    def word_columns(self, words: Sequence[str]) -> I64:
        """The unigram column of each word (-1 where the text is not exactly one word)."""
        occ = self.occurrences(words)
        uni_rows = occ.rows[: occ.n_unigrams]
        per_text = np.bincount(uni_rows, minlength=len(words))
        out = np.full(len(words), -1, dtype=np.int64)
        single = per_text[uni_rows] == 1
        out[uni_rows[single]] = occ.cols[: occ.n_unigrams][single]
        return out

    def _column(self, hashes: U64) -> I64:
        return _bucket(hashes, self.bits)

    def matrix(self, texts: Sequence[str]):  # -> csr_matrix
        """Occurrence counts times `row_scale`, as `score` sees them (training only)."""
        from scipy.sparse import csr_matrix

        occ = self.occurrences(texts)
        x = csr_matrix(
            (row_scale(occ)[occ.rows], (occ.rows, occ.cols)),
            shape=(occ.n_texts, occ.n_features),
            dtype=np.float64,
        )
        x.sum_duplicates()
        return x


def _bucket(hashes: U64, bits: int) -> I64:
    """One of `2**bits` buckets per hash (its top bits after a multiplicative mix)."""
    with np.errstate(over="ignore"):
        return ((hashes * _MIX) >> np.uint64(64 - bits)).astype(np.int64)


def row_scale(occ: Occurrences) -> npt.NDArray[np.float64]:
    """1/sqrt(occurrences) per text: long texts do not score higher for being long."""
    counts = np.bincount(occ.rows, minlength=occ.n_texts).astype(np.float64)
    return 1.0 / np.sqrt(np.maximum(counts, 1.0))


def score(occ: Occurrences, weights_t: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Linear scores (n_texts x n_outputs) of `weights_t` (n_outputs x n_features)."""
    # take() on contiguous rows is several times faster than fancy indexing here.
    gathered = np.take(weights_t, occ.cols, axis=1)
    out = np.empty((occ.n_texts, weights_t.shape[0]), dtype=np.float64)
    for j in range(weights_t.shape[0]):
        out[:, j] = np.bincount(occ.rows, weights=gathered[j], minlength=occ.n_texts)
    # The scale is one number per text: applied to the sums, not to every occurrence.
    return out * row_scale(occ)[:, None]


def _prefix_hash(cps: npt.NDArray[np.uint32]) -> tuple[U64, U64]:
    """prefix[i] = sum_{k<i} cps[k] * BASE**-k and power[i] = BASE**i, both mod 2**64."""
    n = len(cps)
    ones = np.ones(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        inv_pow = np.cumprod(np.concatenate(([np.uint64(1)], ones[:-1] * _BASE_INV)))
        power = np.cumprod(np.concatenate(([np.uint64(1)], ones * _BASE)))
        prefix = np.concatenate(
            ([np.uint64(0)], np.cumsum((cps.astype(np.uint64) + np.uint64(1)) * inv_pow))
        )
    return prefix.astype(np.uint64), power.astype(np.uint64)


def _span_hash(prefix: U64, power: U64, starts: I64, ends: I64) -> U64:
    """Polynomial hash of cps[start:end] per span, independent of where the span is."""
    with np.errstate(over="ignore"):
        return (prefix[ends] - prefix[starts]) * power[ends - 1]


def _char_grams(prefix: U64, power: U64, starts: I64, ends: I64, n: int) -> tuple[I64, U64]:
    """The character n-grams of every token longer than n: `(token index, hash)` each."""
    length = ends - starts
    count = np.where(length > n, length - n + 1, 0)
    owner = np.repeat(np.arange(len(starts), dtype=np.int64), count)
    # Position of each n-gram inside its token: 0, 1, ... count-1 per token.
    offset = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    first = starts[owner] + offset
    with np.errstate(over="ignore"):
        hashes = _span_hash(prefix, power, first, first + n) ^ _SALT_CHARS[n]
        hashes ^= np.where(offset == 0, _SALT_PREFIX, np.uint64(0))
        hashes ^= np.where(first + n == ends[owner], _SALT_SUFFIX, np.uint64(0))
    return owner, hashes


def _word_spans(cps: npt.NDArray[np.uint32]) -> tuple[I64, I64]:
    """Word tokens: runs of letters, digits and ' * _ - (non-ASCII letters included); every
    other visible character (emoji, ! ?) is a token of its own, but for # . , : ; " ( )."""
    ascii_word = (
        ((cps >= 97) & (cps <= 122))
        | ((cps >= 48) & (cps <= 57))
        | (cps == 39)
        | (cps == 42)
        | (cps == 95)
        | (cps == 45)
        | (cps == 64)  # the `@` of @user
    )
    # Latin, Greek, Cyrillic ... up to general punctuation; symbols and emoji stand alone.
    other_letter = (cps >= 0xC0) & (cps < 0x2000)
    word = ascii_word | other_letter
    space = (cps == 32) | (cps == ord(_SEP))
    single = ~word & ~space & ~np.isin(cps, _DROPPED)
    prev_word = np.concatenate(([False], word[:-1]))
    next_word = np.concatenate((word[1:], [False]))
    idx = np.arange(len(cps), dtype=np.int64)
    word_starts = idx[word & ~prev_word]
    word_ends = idx[word & ~next_word] + 1
    single_idx = idx[single]
    starts = np.concatenate((word_starts, single_idx))
    ends = np.concatenate((word_ends, single_idx + 1))
    order = np.argsort(starts, kind="stable")
    return starts[order], ends[order]


def words_of(texts: Sequence[str]) -> list[str]:
    """Every word token of the texts as a string, as `HashedFeatures` sees it (training:
    the words that get a vector or a lexicon score)."""
    cps = code_points(texts)
    joined = cps.tobytes().decode("utf-32-le")
    starts, ends = _word_spans(cps)
    return [joined[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
