"""Shared fixtures for the HSL tests: hand-made TSV rows in the competition format, and a tiny
parsed dataset matching the upstream reference run (tests/hsl/data/tiny_dataset.json).

The reference files in tests/hsl/data were produced by running upstream liufh1/HSL@fa5c66f
(HSL/model.py, HSL/evaluation.py, HSL/data.py collate functions, metric.py) in a scratch folder
on torch 2.x/CPU, with SCAN's Vocabulary class: torch.manual_seed(0); model = HSL(opt) for two
configs (A: --glove --no_txtnorm --score_agg mean; B: defaults, --score_agg max; widths d=w=8,
e=12, img_dim=16), saving its embeddings, score matrices, loss, eval scores/nDCG, one
optimizer step, a checkpoint written by upstream's torch.save layout and a pickled vocab.
"""
import base64
import json
import os
import shutil

import numpy as np
import pytest
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
HEADER = 'product_id\timage_h\timage_w\tnum_boxes\tboxes\tfeatures\tclass_labels\tquery\tquery_id\n'
torch.set_num_threads(1)


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode('ascii')


def tsv_row(pid, feats, query, qid, boxes=None, labels=None, h=100, w=120):
    feats = np.asarray(feats, np.float32)
    n = feats.shape[0]
    if boxes is None:  # areas strictly decreasing: file order == top-k order
        boxes = np.array([[0, 0, 10 - i, 10 - i] for i in range(n)], np.float32)
    if labels is None:
        labels = np.arange(n, dtype=np.int64)
    return '\t'.join([str(pid), str(h), str(w), str(n), b64(np.asarray(boxes, np.float32)),
                      b64(feats), b64(np.asarray(labels, np.int64)), query, str(qid)]) + '\n'


def write_tsv(path, rows, header=HEADER):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(header)
        f.writelines(rows)


def load_tiny():
    with open(os.path.join(DATA, 'tiny_dataset.json')) as f:
        tiny = json.load(f)
    tiny['feats'] = {int(p): np.array(v, np.float32) for p, v in tiny['feats'].items()}
    return tiny


@pytest.fixture(scope='session')
def reference():
    return dict(np.load(os.path.join(DATA, 'upstream_reference.npz')))


@pytest.fixture(scope='session')
def tiny():
    return load_tiny()


def build_tiny_root(root):
    """{root}/data/KDDCup2020/{train,valid} parsed from TSVs of the tiny dataset, the authors'-style
    vocab pickle, the answer file, and {root}/code as working directory."""
    from hsl import parse_dataset
    tiny = load_tiny()
    data = os.path.join(root, 'data')
    valid_rows = [tsv_row(p, tiny['feats'][p], text, qid) for qid, text, pool in tiny['queries'] for p in pool]
    train_rows = [tsv_row(pool[0], tiny['feats'][pool[0]], text, i)
                  for i, (qid, text, pool) in enumerate(tiny['queries'] * 3)]
    write_tsv(os.path.join(data, 'KDDCup2020', 'valid', 'valid.tsv'), valid_rows)
    write_tsv(os.path.join(data, 'KDDCup2020', 'train', 'train.tsv'), train_rows)
    shutil.copy(os.path.join(DATA, 'upstream_vocab.pkl'), os.path.join(data, 'KDDCup2020', 'kddcup_vocab.pkl'))
    os.makedirs(os.path.join(data, 'kddcup', 'valid'))
    with open(os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'), 'w') as f:
        json.dump(tiny['answer'], f)
    parse_dataset.main(['--data_path', data, '--feature_dim', str(tiny['D']), '--no_progress'])
    os.makedirs(os.path.join(root, 'code'))
    return root


@pytest.fixture(scope='session')
def tiny_root(tmp_path_factory):
    return build_tiny_root(str(tmp_path_factory.mktemp('hsl_tiny')))


# model flags of the reference configs (A = README training flags)
TINY_SIZES = ['--img_dim', '16', '--d_model', '8', '--word_dim', '8', '--embed_size', '12',
              '--HIDDEN_SIZE', '8', '--FLAT_MLP_SIZE', '8', '--FLAT_OUT_SIZE', '12']
CONFIG_FLAGS = {'A': ['--glove', '--no_txtnorm', '--score_agg', 'mean'], 'B': ['--score_agg', 'max']}


def tiny_opt(cfg, extra=(), vocab_size=10, we_parameter=None):
    from hsl import parser
    opt = parser.get_parser(TINY_SIZES + CONFIG_FLAGS[cfg] + list(extra))
    opt.vocab_size = vocab_size
    if cfg == 'A' and we_parameter is None:
        we_parameter = np.random.RandomState(7).uniform(-0.5, 0.5, (vocab_size, 300))
    opt.we_parameter = we_parameter if cfg == 'A' else None
    return opt


@pytest.fixture(scope='session')
def hh():
    """The helpers above, for test modules (importlib import mode: no `import conftest`)."""
    import types
    return types.SimpleNamespace(tsv_row=tsv_row, write_tsv=write_tsv, b64=b64, HEADER=HEADER,
                                 DATA=DATA, tiny_opt=tiny_opt, TINY_SIZES=TINY_SIZES,
                                 CONFIG_FLAGS=CONFIG_FLAGS, build_tiny_root=build_tiny_root)
