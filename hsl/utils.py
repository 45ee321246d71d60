"""Small helpers of upstream utils.py: l2norm and the GloVe (word2vec binary) embedding matrix."""
import os

import numpy as np
import torch

from common import logger as common_logger
from common.errors import InputError

GLOVE_DIM = 300  # hard-coded upstream (utils.py:104, model.py:164)


class GloveMissingError(FileNotFoundError):
    """The GloVe file named by --glove_path does not exist."""


class AverageMeter(common_logger.AverageMeter):
    """HSL's own meter (upstream utils.py:7): exact mean (no vsepp epsilon), 5-decimal text."""

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count

    def __str__(self):
        if self.count == 0:
            return str(self.val)
        return '%.5f (%.5f)' % (self.val, self.avg)


class LogCollector(common_logger.LogCollector):
    """common's LogCollector filled with HSL's AverageMeter (log lines as upstream prints them)."""

    def update(self, k, v, n=1):
        if k not in self.meters:
            self.meters[k] = AverageMeter()
        self.meters[k].update(v, n)

    def reset(self):
        for meter in self.meters.values():
            meter.reset()


def l2norm(X, dim=-1, eps=1e-8):
    """L2-normalise along `dim`; eps is added after the sqrt (upstream utils.py:43)."""
    norm = torch.pow(X, 2).sum(dim=dim, keepdim=True).sqrt() + eps
    return torch.div(X, norm)


def load_word2vec(filename, binary=True):
    """gensim KeyedVectors of a word2vec file; missing, truncated or garbled files are clear errors."""
    from gensim.models import KeyedVectors  # here: gensim takes seconds to import, only --glove needs it
    if not os.path.isfile(filename):
        raise GloveMissingError(
            'GloVe file not found: %s\n  --glove needs glove.42B.300d converted to word2vec binary '
            '(http://nlp.stanford.edu/data/glove.42B.300d.zip, then gensim KeyedVectors.'
            'load_word2vec_format(txt, binary=False, no_header=True).save_word2vec_format('
            '"glove_model.bin", binary=True)); pass its path with --glove_path.' % filename)
    try:
        vectors = KeyedVectors.load_word2vec_format(filename, binary=binary)
    except (EOFError, ValueError, UnicodeDecodeError, IndexError, OverflowError, MemoryError) as err:
        raise InputError('%s: truncated or not a word2vec %s file (%s: %s); rebuild it as the README '
                         'says (gensim save_word2vec_format(..., binary=True))'
                         % (filename, 'binary' if binary else 'text', type(err).__name__,
                            str(err).splitlines()[0][:200] if str(err) else '')) from None
    if vectors.vector_size != GLOVE_DIM:
        raise InputError('%s: vectors have %d values, HSL needs %d (glove.42B.300d)'
                         % (filename, vectors.vector_size, GLOVE_DIM))
    return vectors


def get_we_parameter(vocab, w2v_file):
    """(len(vocab), 300) float64 matrix: GloVe rows where known, else U(-0.1, 0.1) from the global
    numpy RNG (unseeded upstream; seeded here through --seed)."""
    word2vec = load_word2vec(w2v_file)
    weight = []
    total = 0
    for i in range(len(vocab)):
        word = vocab.idx2word[i]
        if word in word2vec.key_to_index:
            vec = word2vec[word]
            total = total + 1
        else:
            vec = np.random.uniform(-0.1, 0.1, GLOVE_DIM)
        weight.append(vec)
    print("total loading words from glove...", total)
    return np.array(weight)
