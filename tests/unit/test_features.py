"""The batch featurizer: which words it sees, and that a text's features never depend on
the other texts of its batch."""

from __future__ import annotations

import numpy as np
import pytest

from streamapp.classifiers.features import HashedFeatures, normalise_batch, score, words_of


def columns_of(hf: HashedFeatures, texts: list[str]) -> list[list[int]]:
    occ = hf.occurrences(texts)
    return [sorted(occ.cols[occ.rows == i].tolist()) for i in range(len(texts))]


def test_words_as_the_featurizer_sees_them() -> None:
    assert words_of(["Sooooo GOOD!!! see https://t.co/x @Bob #win"]) == [
        "soo", "good", "!", "!", "see", "httpurl", "@user", "win",
    ]  # fmt: skip
    # Apostrophes, hyphens and asterisks stay inside words; emoji are tokens of their own;
    # letters beyond ASCII are letters.
    assert words_of(["don't f*ck well-known café 😀"]) == [
        "don't", "f*ck", "well-known", "café", "😀",
    ]  # fmt: skip
    # Punctuation without signal is dropped: # . , : ; " ( )
    assert words_of(['a, b. "c" (d): e;']) == ["a", "b", "c", "d", "e"]


def test_emoticons_are_words_and_times_links_and_ratios_are_not() -> None:
    assert words_of(["so good :) :-D ;) :P <3 &lt;3", "awful :( :'( :/ =["]) == [
        "so", "good", "emosmile", "emolaugh", "emowink", "emotongue", "emoheart", "emoheart",
        "awful", "emofrown", "emocry", "emounsure", "emofrown",
    ]  # fmt: skip
    # Glued to a word, still an emoticon; after a digit or inside a link, or followed by a
    # letter, not one.
    assert words_of(["great:) at 10:30 or 3:2 http://t.co/x :data (see)"]) == [
        "great", "emosmile", "at", "10", "30", "or", "3", "2", "httpurl", "data", "see",
    ]  # fmt: skip


def test_every_emoticon_word_has_a_valence_in_training() -> None:
    pytest.importorskip("vaderSentiment", reason="training needs the train extra")
    from streamapp.classifiers.train import vader_lexicon

    spellings = ":) :] =) :> :-d =d ;) ;d :p ;b =p :( =[ :< :'( :/ :| =\\ <3 &lt;3"
    words = set(words_of([spellings]))
    assert len(words) == 8 and all(w.startswith("emo") for w in words), words
    lexicon = vader_lexicon()
    assert all(lexicon[w] > 0 for w in words - {"emofrown", "emocry", "emounsure"})
    assert all(lexicon[w] < 0 for w in {"emofrown", "emocry", "emounsure"})


def test_links_and_mentions_never_run_into_the_next_text() -> None:
    texts = ["see http://t.co/abc", "next text", "@bob", "x"]
    assert normalise_batch(texts).split("\x00") == [
        "see  httpurl ", "next text", " @user ", "x",
    ]  # fmt: skip
    assert words_of(texts) == ["see", "httpurl", "next", "text", "@user", "x"]


def test_the_same_text_has_the_same_columns_in_any_batch() -> None:
    hf = HashedFeatures(bits=18)
    texts = ["I love it", "", "a\x00b c", "hate   them\nall", "I love it"]
    together = columns_of(hf, texts)
    for i, text in enumerate(texts):
        assert columns_of(hf, [text])[0] == together[i]
        assert columns_of(hf, ["filler words here", text])[1] == together[i]
    assert together[0] == together[4] and together[1] == []
    # A separator inside a text is a space, not a new text.
    assert together[2] == columns_of(hf, ["a b c"])[0]


def test_unigrams_come_first_and_bigrams_are_ordered() -> None:
    hf = HashedFeatures(bits=20)
    occ = hf.occurrences(["good day", "day good"])
    assert occ.n_unigrams == 4 and len(occ.rows) == 6
    uni = occ.cols[:4]
    assert uni[0] == uni[3] and uni[1] == uni[2]  # the same words...
    assert occ.cols[4] != occ.cols[5]  # ...but "good day" is not "day good"
    assert hf.word_columns(["good", "day", "good day", ""]).tolist() == [uni[0], uni[1], -1, -1]


def test_score_sums_weights_over_occurrences_scaled_by_length() -> None:
    hf = HashedFeatures(bits=10)
    weights = np.zeros((2, hf.n_features), dtype=np.float32)
    (good,) = hf.word_columns(["good"])
    weights[0, good] = 1.0
    weights[1, good] = -2.0
    occ = hf.occurrences(["good", "good good", "bad"])
    out = score(occ, weights)
    # "good good": two unigrams and one bigram -> (1 + 1) / sqrt(3)
    assert np.allclose(out[:, 0], [1.0, 2 / np.sqrt(3), 0.0])
    assert np.allclose(out[:, 1], -2 * out[:, 0])
    assert (hf.matrix(["good good"]).toarray()[0, good]) == np.float64(2 / np.sqrt(3))


def test_character_ngrams_of_words_longer_than_n() -> None:
    plain, chars = HashedFeatures(bits=20), HashedFeatures(bits=20, char_sizes=(3,))
    occ = chars.occurrences(["hello to you"])
    # Unigrams and bigrams as without them; then "hello": hel ell llo ("to", "you": none).
    base = plain.occurrences(["hello to you"])
    assert occ.n_unigrams == base.n_unigrams == 3
    assert occ.cols[: len(base.cols)].tolist() == base.cols.tolist()
    assert len(occ.cols) == len(base.cols) + 3
    # The start and the end of a word differ from its inside: "abab" has "aba" at its start
    # and "bab" at its end; "xababx" has both inside, as other features.
    edge = chars.occurrences(["abab"]).cols[1:].tolist()
    inside = chars.occurrences(["xababx"]).cols[1:].tolist()
    assert len(edge) == 2 and not set(edge) & set(inside)
    # A misspelling shares the n-grams of the word it misspells.
    hateful, misspelt = (set(columns_of(chars, [t])[0]) for t in ("hateful", "hatefull"))
    assert len(hateful & misspelt) == 4  # ^hat, ate, tef, efu (not ful$ / ull$)


def test_character_ngrams_never_depend_on_the_batch() -> None:
    hf = HashedFeatures(bits=18, char_sizes=(3, 4, 5))
    texts = ["Sooooo GOOD!!! https://t.co/x @Bob #winning", "", "don't f*ck well-known café"]
    together = columns_of(hf, texts)
    for i, text in enumerate(texts):
        assert columns_of(hf, ["filler words here", text])[1] == together[i]


def test_every_kind_of_whitespace_separates_words_alike() -> None:
    hf = HashedFeatures(bits=18, char_sizes=(3,))
    spaced = columns_of(hf, ["  big\u00a0bad\twolf\n\u3000\x85", "big bad wolf"])
    assert spaced[0] == spaced[1] != []
