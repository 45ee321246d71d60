"""Shared pytest fixtures: where the repo and the read-only shared data live."""
import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data')

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def shared_data():
    """Path of ../shared/data (the upstream repos' real data); skip when this checkout lacks it."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip('../shared/data is not beside this checkout')
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU (run `make test-gpu` on a GPU machine)')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


def save_legacy_cuda_checkpoint(obj, path):
    """Write `obj` as torch<=1.5 did on a GPU machine: the legacy (non-zip) format whose storages
    are `torch.cuda.*Storage` located on 'cuda:0'. Made on CPU by re-labelling a legacy CPU save
    (the storage class and location are plain pickle text in that format)."""
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    for kind in (b'Float', b'Double', b'Long', b'Int', b'Byte', b'Bool', b'Half', b'Char', b'Short'):
        data = data.replace(b'ctorch\n' + kind + b'Storage\n', b'ctorch.cuda\n' + kind + b'Storage\n')
    data = data.replace(b'X\x03\x00\x00\x00cpu', b'X\x06\x00\x00\x00cuda:0')
    with open(path, 'wb') as f:
        f.write(data)
    return path


@pytest.fixture
def legacy_cuda_save():
    """save(obj, path): a legacy-format checkpoint with CUDA storages, as old upstream runs wrote."""
    return save_legacy_cuda_checkpoint
