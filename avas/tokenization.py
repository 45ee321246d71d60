"""WordPiece tokenizer of the ALIGN text tower, built explicitly from a bert `vocab.txt`.

Upstream calls `BertTokenizer.from_pretrained(bert_path + "/vocab.txt")` (transformers 4.8.1, the
slow Python WordPiece). Under transformers 5 that call can silently produce a 5-token vocabulary,
so every character becomes [UNK] and all texts embed alike (spec §8, quirk 27). We read the vocab
file ourselves (same rule as 4.8.1 `load_vocab`: one token per line, index = line number) and hand
it to transformers' BertTokenizer, with 4.8.1's defaults: lower-casing, accent stripping following
lower-casing, CJK characters split, [CLS] ... [SEP].
"""
import collections
import os

from transformers import BertTokenizer

from avas.errors import MissingFileError
from common.errors import InputError
from common.safeio import fingerprint, iter_text_lines

MAX_LENGTH = 50  # upstream: tokenizer(..., truncation=True, max_length=50) everywhere


def vocab_file(bert_path):
    """`bert_path` may be the folder holding vocab.txt or the vocab file itself."""
    return bert_path if os.path.isfile(bert_path) else os.path.join(bert_path, 'vocab.txt')


def load_vocab(path):
    if not os.path.isfile(path):
        raise MissingFileError(
            '%s: BERT vocabulary not found. Pass --bert_path pointing at a folder with the '
            'bert-base-chinese config.json and vocab.txt (shipped in avas/data/bert, or '
            'https://huggingface.co/bert-base-chinese).' % path)
    vocab = collections.OrderedDict()
    for index, token in enumerate(iter_text_lines(path, 'BERT vocabulary')):
        vocab[token] = index
    return vocab


def build_tokenizer(bert_path, do_lower_case=True):
    path = vocab_file(bert_path)
    vocab = load_vocab(path)
    for special in ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'):
        if special not in vocab:
            raise InputError('%s: not a BERT vocabulary (no %s token)' % (path, special))
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=do_lower_case, tokenize_chinese_chars=True,
                              strip_accents=None)
    if len(tokenizer) != len(vocab):  # guard against the silent empty-vocab trap
        raise RuntimeError('%s: tokenizer built with %d tokens instead of %d'
                           % (path, len(tokenizer), len(vocab)))
    return tokenizer


def tokenize(tokenizer, texts, device=None):
    """Upstream's call: padding=True, truncation=True, max_length=50, PyTorch tensors."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_LENGTH,
                      return_tensors='pt')
    return batch.to(device) if device is not None else batch


def vocab_fingerprint(tokenizer):
    """sha256 of the vocabulary in id order: stored in the checkpoints train_align.py writes."""
    vocab = tokenizer.get_vocab()
    return fingerprint(sorted(vocab, key=vocab.get))
