"""M2HSE checkpoint files: loading (upstream's and ours, allow-listed), checks that a checkpoint fits
the model, level and vocabulary, and the atomic per-epoch save of upstream train_*.py:116-136."""
import os

import torch

from common.atomic import atomic_open
from common.checkpoint import CheckpointError, load_checkpoint
from common.errors import InputError
from common.safeio import all_finite, fingerprint
from common.vocab import Vocabulary

UPSTREAM_ALIASES = {'vocab.Vocabulary': Vocabulary}  # upstream pickled its own vocab class path
REQUIRED_KEYS = ('model', 'opt')
LEVEL_PREFIXES = ('global_', 'local_')


def vocab_fingerprint(vocab):
    """sha256 of the words in id order: two vocabularies agree iff every id means the same word."""
    return fingerprint(vocab.idx2word[i] for i in sorted(vocab.idx2word))


def prefixed_state_dict(model):
    """Upstream saved nn.DataParallel(model).state_dict(): every key starts with 'module.'."""
    return {'module.' + k: v for k, v in model.state_dict().items()}


def strip_module_prefix(state_dict):
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}


def detect_level(state_dict):
    """'global' or 'local' from the weight names (upstream modules are global_* / local_*)."""
    return 'local' if any('local_cnn_enc' in k for k in state_dict) else 'global'


def load_model_checkpoint(path):
    """Load an upstream or port checkpoint (pickled opts, numpy scalars) without unsafe unpickling,
    and refuse files that are not M2HSE checkpoints (e.g. another paper's) with a clear message."""
    if os.path.isdir(path):
        raise InputError('%s: is a folder; pass the checkpoint file (e.g. model_best.pth.tar)' % path)
    try:
        checkpoint = load_checkpoint(path, aliases=UPSTREAM_ALIASES)
    except CheckpointError as err:
        raise InputError(str(err)) from None
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InputError('%s: not an M2HSE checkpoint (expected the keys %s, found %s); pass a '
                         'model.pth.tar / model_best.pth.tar written by train_global.py or train_local.py'
                         % (path, list(REQUIRED_KEYS), found))
    state = checkpoint['model']
    names = list(state) if isinstance(state, dict) else []
    if not names or not all(strip_module_prefix({k: 0}).popitem()[0].startswith(LEVEL_PREFIXES) for k in names):
        sample = names[:3] if names else type(state).__name__
        raise InputError('%s: not an M2HSE checkpoint (its weights %s are not named global_*/local_*; '
                         'is it another paper\'s model?)' % (path, sample))
    if not all_finite(state):
        raise InputError('%s: holds NaN or inf weights (a diverged run); use an earlier checkpoint' % path)
    return checkpoint


def check_level(path, checkpoint, level):
    found = detect_level(checkpoint['model'])
    if found != level:
        raise InputError('%s: is a %s-level checkpoint; evaluate it with test_%s.py' % (path, found, found))


def check_vocabulary(path, checkpoint, vocab, vocab_file):
    """Our checkpoints record the training vocabulary's fingerprint; upstream's record only its size."""
    stored = checkpoint.get('vocab_fingerprint')
    if stored is not None:
        if stored != vocab_fingerprint(vocab):
            raise InputError('%s: was trained with another vocabulary than %s (fingerprints differ); '
                             'pass the --vocab_path used for training' % (path, vocab_file))
        return
    print('note: %s has no vocabulary fingerprint (written by the original code): only the vocabulary '
          'size is checked, not that every word keeps its id' % path)


def load_weights(model, state_dict, path):
    """Strict load of (possibly 'module.'-prefixed) weights; a mismatch is explained, not traced."""
    try:
        model.load_state_dict(strip_module_prefix(state_dict))
    except RuntimeError as err:
        detail = ' '.join(str(err).split())[:600]
        raise InputError('%s does not fit the model built from its options and this vocabulary '
                         '(different --vocab_path, embed_size or feature dims?): %s' % (path, detail)) from None


def save_atomic(state, path):
    """torch.save into a temp file beside `path`, renamed over it only once complete."""
    with atomic_open(path, 'wb') as f:
        torch.save(state, f)
