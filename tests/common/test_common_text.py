import glob
import os

import pytest

from common.text import _trained_punkt_available, tokenize

# What nltk's punkt sentence splitter + Treebank word tokenizer give (hand-written reference).
PUNKT_TREEBANK_TOKENS = [
    ("A man's dog.", ['a', 'man', "'s", 'dog', '.']),
    ("Women's shoes on sale", ['women', "'s", 'shoes', 'on', 'sale']),
    ("don't stop", ['do', "n't", 'stop']),
    ('a well-known 3.5 inch toy, blue', ['a', 'well-known', '3.5', 'inch', 'toy', ',', 'blue']),
    ('Two dogs play. One runs away', ['two', 'dogs', 'play', '.', 'one', 'runs', 'away']),
    ('10,000 people at 5:30 p.m.', ['10,000', 'people', 'at', '5:30', 'p.m', '.']),
    ('it costs $5!', ['it', 'costs', '$', '5', '!']),
    ('he said "hi" to me', ['he', 'said', '``', 'hi', "''", 'to', 'me']),
    ('(a) b', ['(', 'a', ')', 'b']),
    ('A dog... running', ['a', 'dog', '...', 'running']),
    ('a t-shirt; red/blue stripes?', ['a', 't-shirt', ';', 'red/blue', 'stripes', '?']),
    ('Mr. Smith walks', ['mr.', 'smith', 'walks']),
    ('the U.S. flag waves', ['the', 'u.s.', 'flag', 'waves']),
    ('Café au lait, naïve Zoë', ['café', 'au', 'lait', ',', 'naïve', 'zoë']),
    ('A child in a pink dress is climbing up a set of stairs in an entry way .',
     ['a', 'child', 'in', 'a', 'pink', 'dress', 'is', 'climbing', 'up', 'a', 'set', 'of',
      'stairs', 'in', 'an', 'entry', 'way', '.']),
]


@pytest.mark.parametrize('caption, tokens', PUNKT_TREEBANK_TOKENS)
def test_offline_tokenizer_matches_punkt_reference(caption, tokens):
    assert tokenize(caption, use_punkt=False) == tokens


@pytest.mark.parametrize('caption, tokens', PUNKT_TREEBANK_TOKENS)
def test_trained_punkt_path_matches_reference(caption, tokens):
    if not _trained_punkt_available():
        pytest.skip("nltk punkt data not installed (python -m nltk.downloader punkt_tab)")
    assert tokenize(caption, use_punkt=True) == tokens


def test_bytes_captions_are_decoded():
    assert tokenize('Ünïcode Dog'.encode('utf-8'), use_punkt=False) == ['ünïcode', 'dog']


def test_every_corel5k_caption_tokenizes_to_its_words(shared_data):
    files = glob.glob(os.path.join(shared_data, 'm2hse', '*', '*caps.txt'))
    assert len(files) >= 4
    n = 0
    for path in files:
        with open(path, encoding='utf-8') as f:
            for line in f:
                caption = line.strip()
                assert tokenize(caption, use_punkt=False) == caption.lower().split(), (path, caption)
                if _trained_punkt_available():
                    assert tokenize(caption, use_punkt=True) == caption.lower().split()
                n += 1
    assert n > 5000
