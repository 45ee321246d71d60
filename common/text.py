"""Caption tokenisation as the vsepp family does it: lowercase + nltk word tokenisation, offline-safe.

`nltk.word_tokenize` first splits sentences with the trained punkt model, which nltk downloads on
demand. When that data is installed we use it; otherwise we split sentences with an untrained
`PunktSentenceTokenizer` (same algorithm, no abbreviation list) and tokenise each sentence with
the same Treebank-style `NLTKWordTokenizer`. On ordinary captions both give the same tokens.

nltk is imported on the first tokenisation, not with this module: `import nltk` loads scipy,
sklearn and pandas (seconds), and scripts that import this module must answer --help at once.
"""
import functools


@functools.lru_cache(maxsize=1)
def _trained_punkt_available():
    import nltk
    for resource in ('tokenizers/punkt_tab/english/', 'tokenizers/punkt/english.pickle'):
        try:
            nltk.data.find(resource)
            return True
        except LookupError:
            pass
    return False


# Frequent abbreviations of nltk's trained English punkt model, so that "mr. smith" or "the u.s.
# flag" stay one sentence offline too (punkt stores them lowercased, without the final period).
_ABBREVIATIONS = ('mr', 'mrs', 'ms', 'dr', 'st', 'jr', 'sr', 'vs', 'etc', 'inc', 'co', 'ltd',
                  'u.s', 'u.k', 'e.g', 'i.e', 'a.m', 'jan', 'feb', 'aug', 'sept', 'oct',
                  'nov', 'dec', 'mt', 'ft', 'approx')


@functools.lru_cache(maxsize=1)
def _offline_tokenizers():
    """(sentence splitter without trained data, Treebank word tokenizer), built once."""
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer
    from nltk.tokenize.punkt import PunktParameters
    params = PunktParameters()
    params.abbrev_types = set(_ABBREVIATIONS)
    return PunktSentenceTokenizer(params), NLTKWordTokenizer()


def word_tokenize(text, use_punkt=None):
    """Tokens of `text`; `use_punkt` forces (True) or forbids (False) the trained punkt data."""
    if use_punkt is None:
        use_punkt = _trained_punkt_available()
    if use_punkt:
        import nltk
        return nltk.word_tokenize(text)
    sentences, words = _offline_tokenizers()
    return [tok for sent in sentences.tokenize(text) for tok in words.tokenize(sent)]


def tokenize(caption, use_punkt=None):
    """vsepp/SCAN `nltk.tokenize.word_tokenize(caption.lower())`."""
    if isinstance(caption, bytes):
        caption = caption.decode('utf-8')
    return word_tokenize(caption.lower(), use_punkt=use_punkt)
