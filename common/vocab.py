"""The SCAN/VSE-family word vocabulary, its JSON files, and building one from captions."""
import json
from collections import Counter

from common.atomic import atomic_open
from common.text import tokenize

SPECIAL_TOKENS = ('<pad>', '<start>', '<end>', '<unk>')


class Vocabulary(object):
    """Word <-> id map; unknown words map to '<unk>' (as in vsepp/SCAN `vocab.py`)."""

    def __init__(self):
        self.word2idx = {}
        self.idx2word = {}
        self.idx = 0

    def add_word(self, word):
        if word not in self.word2idx:
            self.word2idx[word] = self.idx
            self.idx2word[self.idx] = word
            self.idx += 1

    def __call__(self, word):
        if word not in self.word2idx:
            return self.word2idx['<unk>']
        return self.word2idx[word]

    def __len__(self):
        return len(self.word2idx)


def serialize_vocab(vocab, path):
    """Write the SCAN JSON layout {word2idx, idx2word, idx} (JSON turns idx2word keys into str)."""
    payload = {'word2idx': vocab.word2idx,
               'idx2word': {str(k): v for k, v in vocab.idx2word.items()},
               'idx': vocab.idx}
    with atomic_open(path, 'w') as f:
        json.dump(payload, f)


def deserialize_vocab(path):
    """Read a SCAN JSON vocab; idx2word keys come back as ints (upstream left them as str)."""
    try:
        with open(path, encoding='utf-8') as f:
            payload = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError('vocabulary file not found: %s' % path) from None
    except json.JSONDecodeError as err:
        raise ValueError('%s: not a JSON vocabulary (line %d: %s)' % (path, err.lineno, err.msg)) from None
    for key in ('word2idx', 'idx2word', 'idx'):
        if key not in payload:
            raise ValueError('%s: vocabulary JSON has no %r field' % (path, key))
    vocab = Vocabulary()
    vocab.word2idx = dict(payload['word2idx'])
    vocab.idx2word = {int(k): v for k, v in payload['idx2word'].items()}
    vocab.idx = int(payload['idx'])
    return vocab


def build_vocab(captions, threshold, tokenize=tokenize, specials=SPECIAL_TOKENS):
    """Specials first, then every word seen >= threshold times, in first-seen order."""
    counter = Counter()
    for caption in captions:
        counter.update(tokenize(caption))
    vocab = Vocabulary()
    for word in specials:
        vocab.add_word(word)
    for word, count in counter.items():
        if count >= threshold:
            vocab.add_word(word)
    return vocab


def caption_to_ids(vocab, caption, tokenize=tokenize):
    """[<start>] + the word ids of the tokenized caption + [<end>] (vsepp/SCAN data.py)."""
    return [vocab('<start>')] + [vocab(token) for token in tokenize(caption)] + [vocab('<end>')]


def sort_by_caption_length(batch, index=1):
    """Batch items sorted by the length of item[index], longest first (stable), as packed RNNs need."""
    return sorted(batch, key=lambda item: len(item[index]), reverse=True)


def pad_captions(captions):
    """Id sequences (lists or tensors) -> (LongTensor (B, longest) padded with 0 = <pad>, lengths)."""
    import torch  # here: common.vocab is imported by light scripts (vocabulary building, --help)
    lengths = [len(caption) for caption in captions]
    targets = torch.zeros(len(captions), max(lengths)).long()
    for i, caption in enumerate(captions):
        targets[i, :lengths[i]] = torch.as_tensor(caption)[:lengths[i]]
    return targets, lengths
