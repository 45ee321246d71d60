"""The tokenizer built from vocab.txt equals a from-scratch WordPiece reference (BERT's
BasicTokenizer + greedy longest-match-first WordpieceTokenizer, transformers-4.8.1 semantics) on
real Chinese titles and POI names, and does not fall into the all-[UNK] trap (quirk 27)."""
import os
import unicodedata

import pytest

from avas.data import read_ranking_lines, read_recall_csv, unique_pois
from avas.tokenization import build_tokenizer, load_vocab, tokenize
from tests.avas.avas_testlib import DATA, RECALL_CSV, VAL_CSV

VOCAB = os.path.join(DATA, 'bert', 'vocab.txt')


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith('P')


def _is_ws(ch):
    return ch in ' \t\n\r' or unicodedata.category(ch) == 'Zs'


def _is_control(ch):
    if ch in '\t\n\r':
        return False
    return unicodedata.category(ch).startswith('C')


def reference_wordpiece(text, vocab, max_chars=100):
    # BasicTokenizer: clean, split CJK, whitespace split, lower + strip accents, split punctuation
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        cleaned.append(' ' if _is_ws(ch) else (' %s ' % ch if _is_cjk(cp) else ch))
    words = []
    for tok in ''.join(cleaned).split():
        tok = ''.join(c for c in unicodedata.normalize('NFD', tok.lower()) if unicodedata.category(c) != 'Mn')
        cur = ''
        for ch in tok:
            if _is_punct(ch):
                if cur:
                    words.append(cur)
                words.append(ch)
                cur = ''
            else:
                cur += ch
        if cur:
            words.append(cur)
    # WordpieceTokenizer: greedy longest match, '##' continuation, whole word -> [UNK] on failure
    out = []
    for word in words:
        if len(word) > max_chars:
            out.append('[UNK]')
            continue
        pieces, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else '##' + word[start:end]
                if sub in vocab:
                    found = sub
                    break
                end -= 1
            if found is None:
                pieces = ['[UNK]']
                break
            pieces.append(found)
            start = end
        out.extend(pieces)
    return out


@pytest.fixture(scope='module')
def tok():
    return build_tokenizer(os.path.join(DATA, 'bert'))


def _real_texts():
    titles, names = [], []
    for _, line in read_ranking_lines(VAL_CSV)[:300]:
        f = line.split('$record$')
        titles.append(f[5])
        names.append(f[9])
    pois = [n for _, n in unique_pois(read_recall_csv(RECALL_CSV))]
    return titles + names + pois + ['Hello Kitty乐园 É café ＡＢＣ１２３ iPhone13 Pro，“三亚”！ 2021年']


def test_vocab_loaded_not_the_empty_trap(tok):
    vocab = load_vocab(VOCAB)
    assert len(vocab) == len(tok) == 21128
    assert tok.convert_tokens_to_ids(['[PAD]', '[UNK]', '[CLS]', '[SEP]']) == [0, 100, 101, 102]
    ids = tok('漠河北极村')['input_ids']
    assert ids[0] == 101 and ids[-1] == 102 and 100 not in ids


def test_tokens_equal_wordpiece_reference_on_real_texts(tok):
    vocab = load_vocab(VOCAB)
    texts = _real_texts()
    assert len(texts) > 800
    for text in texts:
        assert tok.tokenize(text) == reference_wordpiece(text, vocab), text


def test_upstream_call_truncates_to_50_and_pads_with_mask(tok):
    vocab = load_vocab(VOCAB)
    long_title = _real_texts()[0] * 4
    batch = tokenize(tok, [long_title, '普陀山'])
    assert batch['input_ids'].shape == (2, 50)
    expect = [101] + [vocab[t] for t in reference_wordpiece(long_title, vocab)[:48]] + [102]
    assert batch['input_ids'][0].tolist() == expect
    assert batch['attention_mask'][1].tolist() == [1] * 5 + [0] * 45
    assert batch['input_ids'][1, :5].tolist() == [101, vocab['普'], vocab['陀'], vocab['山'], 102]


def test_missing_vocab_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='--bert_path'):
        build_tokenizer(str(tmp_path))
