"""Shared helpers for the lhsc tests: fixture paths, a tiny model config, and a writer for
checkpoints in the torch 0.4.1 / Python 2 legacy format (what the original code saved)."""
import argparse
import collections
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')


def tiny_opt(**overrides):
    """The config of the upstream-run fixtures (img 20, word 12, embed 16, sim 8)."""
    opt = argparse.Namespace(data_path=DATA, data_name='f30k_precomp', vocab_path=VOCAB + '/',
                             model_name='./runs/x/checkpoint', logger_name='./runs/x/log',
                             batch_size=128, num_epochs=50, lr_update=30, learning_rate=0.0002,
                             drop_out=0.0, workers=20, log_step=10, val_step=1000, grad_clip=2.0,
                             margin=0.2, max_violation=True, img_dim=20, word_dim=12, embed_size=16,
                             sim_dim=8, num_layers=1, bi_gru=True, no_imgnorm=False, no_txtnorm=False,
                             device='cpu', model='LHSC', module_name='SGR', sgr_step=3, vocab_size=35)
    for k, v in overrides.items():
        setattr(opt, k, v)
    return opt


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield



# ---------------------------------------------------------------- legacy (torch 0.4.1, py2) writer

class _Global(object):
    def __init__(self, module, name):
        self.module, self.name = module, name
        self.__name__ = name

    def __call__(self, *args):
        raise TypeError('marker only')


class _Storage(object):
    def __init__(self, key, array, type_name):
        self.key, self.array, self.type_name = key, array, type_name


class _Tensor(object):
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        return (_Global('torch._utils', '_rebuild_tensor_v2'),
                (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class _Py2OrderedDict(object):
    """py2 OrderedDict.__reduce__: (OrderedDict, ([[k, v], ...],), inst_dict)."""
    def __init__(self, items, metadata=None):
        self.items, self.metadata = items, metadata

    def __reduce__(self):
        args = ([[k, v] for k, v in self.items],)
        if self.metadata is not None:
            return (_Global('collections', 'OrderedDict'), args, {'_metadata': self.metadata})
        return (_Global('collections', 'OrderedDict'), args)


class _Py2Namespace(object):
    def __init__(self, ns):
        self.ns = ns



class _Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, f):
        super().__init__(f, protocol=2)
        self.storages = collections.OrderedDict()

    def save_str(self, obj):
        b = obj.encode('utf-8')
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(b)) + b)
        self.memoize(obj)
    dispatch[str] = save_str

    def save_global_marker(self, obj):
        self.write(pickle.GLOBAL + obj.module.encode() + b'\n' + obj.name.encode() + b'\n')
    dispatch[_Global] = save_global_marker

    def save_namespace(self, obj):
        # what Python 2 writes for a new-style instance at protocol 2: cls () NEWOBJ state BUILD
        self.save_global_marker(_Global('argparse', 'Namespace'))
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self.save(dict(vars(obj.ns)))
        self.write(pickle.BUILD)
    dispatch[_Py2Namespace] = save_namespace

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            self.storages[obj.key] = obj
            return ('storage', _Global('torch.cuda', obj.type_name), obj.key, 'cuda:0', int(obj.array.size), None)
        return None


def _convert(obj, counter, keep_batches_tracked=True, metadata=True):
    if isinstance(obj, torch.Tensor):
        arr = obj.detach().cpu().contiguous().numpy()
        type_name = {np.float32: 'FloatStorage', np.int64: 'LongStorage'}[arr.dtype.type]
        counter[0] += 1
        key = str(94000000 + counter[0] * 4096)
        return _Tensor(_Storage(key, arr.reshape(-1), type_name), list(arr.shape))
    if isinstance(obj, collections.OrderedDict):
        items = [(k, _convert(v, counter, keep_batches_tracked, metadata)) for k, v in obj.items()
                 if keep_batches_tracked or not k.endswith('num_batches_tracked')]
        meta = None
        if metadata and hasattr(obj, '_metadata'):
            meta = _Py2OrderedDict([(k, dict(v)) for k, v in obj._metadata.items()])
        return _Py2OrderedDict(items, meta)
    if isinstance(obj, dict):
        return {k: _convert(v, counter, keep_batches_tracked, metadata) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert(v, counter, keep_batches_tracked, metadata) for v in obj]
    if type(obj).__name__ == 'Namespace':
        return _Py2Namespace(obj)
    return obj


def save_legacy(obj, path, keep_batches_tracked=True, metadata=True):
    """torch 0.4.1-under-Python-2 style `torch.save(obj, path)` for a checkpoint dict."""
    converted = _convert(obj, [0], keep_batches_tracked, metadata)
    buf = io.BytesIO()
    for header in (0x1950a86a20f9469cfc6c, 1001,
                   {'protocol_version': 1001, 'little_endian': True,
                    'type_sizes': {'short': 2, 'int': 4, 'long': 8}}):
        _Pickler(buf).dump(header)
    pickler = _Pickler(buf)
    pickler.dump(converted)
    keys = sorted(pickler.storages.keys())
    _Pickler(buf).dump(keys)
    for key in keys:
        arr = pickler.storages[key].array
        buf.write(struct.pack('<q', arr.size))
        buf.write(arr.astype(arr.dtype.newbyteorder('<')).tobytes())
    with open(path, 'wb') as f:
        f.write(buf.getvalue())


@pytest.fixture
def legacy_save():
    """save_legacy(obj, path, keep_batches_tracked=True, metadata=True)."""
    return save_legacy


@pytest.fixture
def make_opt():
    """tiny_opt(**overrides) -> Namespace of the fixture config."""
    return tiny_opt
