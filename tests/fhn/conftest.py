"""Shared fixtures for the fhn tests: tiny Polyvore-U data sets and configs."""
import os

import pytest
import torch

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Fixed-length tiny data (4 users, 12 items per category) with LMDB."""
    from fhn.make_demo_data import make_data

    out = tmp_path_factory.mktemp("fhn_demo")
    make_data(str(out), users=4, items=8, posi=(6, 2, 3), nega_ratio=(1, 1, 3), seed=0)
    return str(out)


@pytest.fixture(scope="session")
def var_root(tmp_path_factory):
    """Variable-length tiny data (tuples_32 layout: user,top,top,bottom,shoe with -1)."""
    from fhn.make_demo_data import make_data

    out = tmp_path_factory.mktemp("fhn_var")
    make_data(str(out), users=3, items=6, posi=(4, 2, 3), nega_ratio=(1, 1, 2),
              data_set="tuples_32", seed=1)
    return str(out)


def data_cfg(root, data_set="tuples_630", **kw):
    base = dict(data_root=os.path.join(root, "data", "polyvore"), data_set=data_set, num_workers=0,
                use_lmdb=True, use_semantic=True, use_visual=False, image_size=224)
    base.update(kw)
    return base


@pytest.fixture
def make_data_cfg():
    return data_cfg
