"""Tuple / negative / FITB file parsing (fixed and variable length, -1), LMDB round trip."""
import io
import os
import subprocess
import sys

import lmdb
import numpy as np
import pytest
from PIL import Image

from fhn.data import DataError, FITBDataset, PolyvoreDataset, fill_second_top, read_item_list, read_tuples
from fhn.param import DataParam, FITBDataParam

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_read_tuples_and_errors(tmp_path):
    f = tmp_path / "tuples_train_posi"
    f.write_text("user,top,top,bottom,shoe\n0,1,-1,2,3\n1,4,5,6,7\n")
    arr = read_tuples(str(f), 5)
    assert arr.dtype == np.int64 and arr.tolist() == [[0, 1, -1, 2, 3], [1, 4, 5, 6, 7]]
    f.write_text("user,top,bottom,shoe\n0,1,2\n")
    with pytest.raises(DataError, match="tuples_train_posi:2: expected 4 fields"):
        read_tuples(str(f))
    f.write_text("user,top,bottom,shoe\n0,1,x,2\n")
    with pytest.raises(DataError, match=":2: non-integer"):
        read_tuples(str(f))
    with pytest.raises(DataError, match="missing tuple file"):
        read_tuples(str(tmp_path / "nope"))


def test_fill_second_top_copies():
    tpl = np.array([3, -1, 4, 5])
    assert fill_second_top(tpl).tolist() == [3, 3, 4, 5]
    assert tpl.tolist() == [3, -1, 4, 5]  # the dataset's array is not modified


def test_read_item_list_variable_pads_minus_one():
    posi = np.array([[0, 1, -1, 5, 6], [0, 2, 3, 5, 7], [1, 2, -1, 8, 6], [1, 4, 9, 8, 6]])
    items = read_item_list(posi, True)
    assert sorted(items[0]) == [1, 2, 4] and sorted(items[2]) == [5, 8]
    # half the outfits have one top -> as many -1 as real second tops
    assert sorted(items[1]) == [-1, -1, 3, 9]
    fixed = read_item_list(np.array([[0, 1, 2, 3], [0, 1, 4, 3]]), False)
    assert [sorted(x) for x in fixed] == [[1], [2, 4], [3]]


def _param(root, data_set, **kw):
    base = dict(data_root=os.path.join(root, "data", "polyvore"), data_set=data_set, num_workers=0,
                use_semantic=True, use_visual=False, nega_mode="RandomFix", shuffle=False)
    base.update(kw)
    return DataParam(**base)


def test_negatives_pair_with_positive_i_div_r(demo_root):
    ds = PolyvoreDataset(_param(demo_root, "tuples_630", phase="test", data_mode="TuplePair"))
    assert ds.ratio == 3 and len(ds) == 3 * ds.num_posi
    posi, nega, u = ds[7]
    assert posi.tolist() == ds.posi[7 // 3].tolist() and nega.tolist() == ds.nega[7].tolist()
    assert u == ds.uidxs[2]
    ds.set_data_mode("NegaOnly")
    vecs, u = ds[7]
    assert len(vecs) == 3 and vecs[0].shape == (2400,) and u == ds.uidxs[2]
    ds.set_data_mode("PosiOnly")
    assert len(ds) == ds.num_posi


def test_random_online_negatives_are_not_positives(demo_root):
    ds = PolyvoreDataset(_param(demo_root, "tuples_630", phase="train", nega_mode="RandomOnline"))
    np.random.seed(0)
    ds.make_nega()
    assert ds.ratio == 1 and len(ds.nega) == len(ds.posi)
    assert not any(tuple(t) in ds.posi_set for t in ds.nega.tolist())
    for col in range(3):
        assert set(ds.nega[:, col]) <= set(ds.item_list[col])


def test_variable_length_dataset_duplicates_top(var_root):
    ds = PolyvoreDataset(_param(var_root, "tuples_32", phase="test", data_mode="PosiOnly"))
    assert ds.param.cate_map == [0, 0, 1, 2]
    row = int(np.where(ds.posi[:, 1] == -1)[0][0])
    vecs, _ = ds[row]
    assert len(vecs) == 4 and np.array_equal(vecs[0].numpy(), vecs[1].numpy())
    assert ds.posi[row, 1] == -1
    names = ds.get_names(ds.posi[row])
    assert names[0] == names[1]


def test_fitb_rows(demo_root):
    p = FITBDataParam(data_root=os.path.join(demo_root, "data", "polyvore"), num_workers=0,
                      use_semantic=True, use_visual=False)
    ds = FITBDataset(p)
    assert ds.fitb.shape[1] == 16 and len(ds) == 4 * len(ds.fitb)
    uidx, tuples = ds.question(0)
    assert (uidx == uidx[0]).all()
    # the 3 wrong candidates differ from the truth in exactly one slot
    assert [(t != tuples[0]).sum() for t in tuples[1:]] == [1, 1, 1]
    vecs, u = ds[1]
    assert u == uidx[1] and len(vecs) == 3


def test_build_polyvore_lmdb_round_trip(tmp_path):
    src = tmp_path / "291x291"
    src.mkdir()
    blobs = {}
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        buf = io.BytesIO()
        Image.new("RGB", (291, 291), colour).save(buf, format="JPEG")
        name = "%040x.jpg" % i
        (src / name).write_bytes(buf.getvalue())
        blobs[name] = buf.getvalue()
    dst = tmp_path / "lmdb"
    script = os.path.join(REPO, "fhn", "scripts", "build_polyvore.py")
    out = subprocess.run([sys.executable, script, str(src), str(dst), "--map_size", str(2 ** 24)],
                         cwd=str(tmp_path), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    env = lmdb.open(str(dst), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 2
        for name, data in blobs.items():
            assert txn.get(name.encode("ascii")) == data
    env.close()
    img = Image.open(io.BytesIO(blobs["%040x.jpg" % 0])).convert("RGB")
    assert img.size == (291, 291) and img.getpixel((100, 100))[0] > 200


def test_lmdb_and_folder_give_same_images(demo_root):
    from fhn.data import get_img_trans

    t = get_img_trans("test", 224)
    a = PolyvoreDataset(_param(demo_root, "tuples_630", phase="test", use_visual=True,
                               use_semantic=False, image_size=224, data_mode="PosiOnly"), t)
    b = PolyvoreDataset(_param(demo_root, "tuples_630", phase="test", use_visual=True,
                               use_semantic=False, image_size=224, data_mode="PosiOnly",
                               use_lmdb=False), t)
    ia, _ = a[0]
    ib, _ = b[0]
    assert ia[0].shape == (3, 224, 224)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(ia, ib))
