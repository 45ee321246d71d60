"""Bad input to the fhn entry scripts (run.py actions, build_polyvore.py): one clear error naming the
file, exit 2, no traceback, nothing run from a data file, nothing lost."""
import os
import pickle
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from common.atomic import PAUSE_ENV, PAUSE_MESSAGE
from fhn.fingerprint import saved_fingerprint, stamp
from fhn.make_demo_data import make_data
from fhn.model import FashionNet
from fhn.param import DataParam, NetParam

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, "fhn", "scripts", "run.py")
BUILD = os.path.join(REPO, "fhn", "scripts", "build_polyvore.py")
NET = dict(num_users=2, dim=8, hash_types=3, use_semantic=True, use_visual=False)
SOLVER = dict(name="FashionNetSolver", epochs=2, gamma=1.0, gpus=[], checkpoints="ck/run", visdom_port=1,
              display=1, optim_param=dict(name="SGD", lr=[5, 0.01, 0.01], grad_param=dict(momentum=0.9)))


class Marker(object):
    """Unpickling this would create the marker file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, ("touch %s" % self.path,))


def _data(root, **kw):
    base = dict(phase="test", batch_size=8, data_root=root, data_set="tuples_630", nega_mode="RandomFix",
                shuffle=False, num_workers=0, use_semantic=True, use_visual=False)
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Tiny data (2 users, 4 items per category) and a checkpoint stamped like the trainer's."""
    out = tmp_path_factory.mktemp("fhn_faults")
    make_data(str(out), users=2, items=4, posi=(2, 1, 2), nega_ratio=(1, 1, 1), seed=5)
    torch.manual_seed(0)
    net = FashionNet(NetParam(**NET), pretrained=False)
    sd = stamp(net.state_dict(), DataParam(**_data(os.path.join(str(out), "data", "polyvore"))))
    torch.save(sd, str(out / "m.net"))
    return out


@pytest.fixture
def work(base, tmp_path):
    """A fresh copy of the data and checkpoint (tests damage them)."""
    shutil.copytree(str(base / "data"), str(tmp_path / "data"))
    shutil.copy(str(base / "m.net"), str(tmp_path / "m.net"))
    return tmp_path


def write_cfg(work, action="evaluate-rank", name="c.yaml", **over):
    root = "data/polyvore"
    cfg = dict(data_param=_data(root), net_param=dict(NET, name="FashionNetDeploy"),
               load_trained="m.net", gpus=[], result_file="results/r.npz")
    if action == "fitb":
        cfg = dict(fitb_data_param=dict(phase="test", num_cand=4, data_root=root, num_workers=0,
                                        use_semantic=True, use_visual=False),
                   net_param=dict(NET, name="FashionNetDeploy"), load_trained="m.net", gpus=[])
    if action == "train":
        cfg = dict(data_param=_data(root, nega_mode="RandomOnline"),
                   train_data_param=dict(phase="train", shuffle=False),
                   test_data_param=dict(phase="val"),
                   net_param=dict(NET, name="FashionNet"), gpus=[], solver_param=SOLVER)
    cfg.update(over)
    (work / name).write_text(yaml.safe_dump(cfg))
    return name


def run(work, *args, env=None, script=RUN, expect=2):
    full = dict(os.environ, XMODAL_PROGRESS="0", **(env or {}))
    full.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, script] + list(args), cwd=str(work), env=full,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == expect, out.stderr[-3000:]
    if expect == 2:
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        assert "error: " in out.stderr
    return out


def visual_cfg(work):
    """An AlexNet (random, 224 px) checkpoint and its config: the images are read."""
    torch.manual_seed(0)
    torch.save(FashionNet(NetParam(**dict(NET, use_visual=True, use_semantic=False)),
                          pretrained=False).state_dict(), str(work / "v.net"))
    return write_cfg(work, data_param=_data("data/polyvore", use_visual=True, use_semantic=False,
                                            image_size=224),
                     net_param=dict(NET, name="FashionNetDeploy", use_visual=True, use_semantic=False),
                     load_trained="v.net")


def malicious(path, marker):
    with open(path, "wb") as f:
        pickle.dump(dict(evil=Marker(marker)), f)


# ----- missing file --------------------------------------------------------------------
def test_missing_config_file(work):
    out = run(work, "evaluate-rank", "--cfg", "nope.yaml")
    assert "nope.yaml" in out.stderr


def test_missing_tuple_file(work):
    os.remove(work / "data" / "polyvore" / "tuples_630" / "tuples_test_posi")
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "tuples_test_posi" in out.stderr and not (work / "results" / "r.npz").exists()


def test_build_polyvore_missing_folder(work):
    out = run(work, "missing_dir", "lmdb_out", script=BUILD)
    assert "missing_dir" in out.stderr


# ----- truncated / garbled file ---------------------------------------------------------
def test_truncated_lmdb_is_named_not_sigbus(work):
    data = work / "data" / "polyvore" / "images" / "lmdb" / "data.mdb"
    size = os.path.getsize(data)
    with open(data, "r+b") as f:
        f.truncate(size // 3)
    out = run(work, "evaluate-rank", "--cfg", visual_cfg(work))
    assert "data.mdb: truncated" in out.stderr


def test_truncated_checkpoint(work):
    with open(work / "m.net", "r+b") as f:
        f.truncate(200)
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "m.net" in out.stderr and "truncated" in out.stderr


def test_garbled_yaml_names_file(work):
    (work / "bad.yaml").write_text("data_param: [unclosed\n  net_param: {")
    out = run(work, "evaluate-rank", "--cfg", "bad.yaml")
    assert "bad.yaml" in out.stderr and "invalid YAML" in out.stderr


def test_build_polyvore_skips_and_counts_corrupt_jpeg(work):
    src = work / "data" / "polyvore" / "images" / "291x291"
    first = sorted(os.listdir(src))[0]
    (src / first).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = run(work, str(src), "lmdb_new", script=BUILD, expect=0)
    total = len(os.listdir(src))
    assert "%d images written" % (total - 1) in out.stdout and "1 corrupt images skipped" in out.stdout
    assert first in out.stderr
    strict = run(work, str(src), "lmdb_strict", "--strict", script=BUILD)
    assert first in strict.stderr and not (work / "lmdb_strict" / "data.mdb").exists()


def test_outfits_with_skipped_images_left_out_or_strict_error(work):
    """An image build_polyvore skipped: its outfits are left out and counted, or --strict stops."""
    src = work / "data" / "polyvore" / "images" / "291x291"
    tuples = work / "data" / "polyvore" / "tuples_630"
    top = int(open(tuples / "tuples_test_posi").read().split()[1].split(",")[1])
    victim = open(tuples / "image_list_top").read().split()[top]
    (src / victim).write_bytes(b"garbage")
    shutil.rmtree(work / "data" / "polyvore" / "images" / "lmdb")
    run(work, str(src), "data/polyvore/images/lmdb", script=BUILD, expect=0)
    name = visual_cfg(work)
    out = run(work, "evaluate-rank", "--cfg", name, "--strict")
    assert "use images or sentence vectors missing" in out.stderr and victim not in out.stdout
    left = subprocess.run([sys.executable, RUN, "evaluate-rank", "--cfg", name], cwd=str(work),
                          capture_output=True, text=True, timeout=240)
    assert "left out (--strict makes this an error)" in left.stderr and "Traceback" not in left.stderr


# ----- wrong shape -----------------------------------------------------------------------
def test_wrong_sentence_vector_size(work):
    path = work / "data" / "polyvore" / "sentence_vector" / "semantic.pkl"
    with open(path, "rb") as f:
        sem = pickle.load(f)  # the test's own file
    sem = {k: np.asarray(v)[:300] for k, v in sem.items()}
    with open(path, "wb") as f:
        pickle.dump(sem, f)
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "sentence vector" in out.stderr and "(300,)" in out.stderr


def test_malformed_csv_line_named(work):
    path = work / "data" / "polyvore" / "tuples_630" / "tuples_test_posi"
    path.write_text(path.read_text() + "1,2\n")
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "tuples_test_posi:" in out.stderr and "expected 4 fields" in out.stderr


# ----- vocabulary / config mismatch -------------------------------------------------------
def test_other_item_list_than_training_is_an_error(work):
    sd = torch.load(str(work / "m.net"), weights_only=True)
    assert saved_fingerprint(sd)["data_set"] == "tuples_630"
    lst = work / "data" / "polyvore" / "tuples_630" / "image_list_bottom"
    names = lst.read_text().split()
    lst.write_text("\n".join(names[::-1]) + "\n")  # same items, other ids
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "m.net" in out.stderr and "other image lists" in out.stderr


def test_num_users_mismatch_names_checkpoint_and_shapes(work):
    name = write_cfg(work, net_param=dict(NET, name="FashionNetDeploy", num_users=5))
    out = run(work, "evaluate-rank", "--cfg", name)
    assert "m.net" in out.stderr and "shapes differ" in out.stderr and "size mismatch" not in out.stderr


# ----- bad checkpoint ----------------------------------------------------------------------
def test_another_papers_checkpoint(work):
    torch.save({"model": [torch.zeros(3)], "epoch": 3}, str(work / "other.pth.tar"))
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work, load_trained="other.pth.tar"))
    assert "other.pth.tar" in out.stderr and "not a Fashion Hash Net checkpoint" in out.stderr


def test_text_file_as_checkpoint(work):
    (work / "notes.net").write_text("hello")
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work, load_trained="notes.net"))
    assert "notes.net" in out.stderr and "not a PyTorch checkpoint" in out.stderr


# ----- empty split ------------------------------------------------------------------------
def test_header_only_positives(work):
    path = work / "data" / "polyvore" / "tuples_630" / "tuples_test_posi"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "tuples_test_posi: no positive tuples" in out.stderr


def test_empty_fitb(work):
    path = work / "data" / "polyvore" / "tuples_630" / "fill_in_blank_test"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    out = run(work, "fitb", "--cfg", write_cfg(work, "fitb"))
    assert "fill_in_blank_test: no FITB questions" in out.stderr


# ----- non-finite values --------------------------------------------------------------------
def test_nan_inputs_stop_training_at_first_step(work):
    path = work / "data" / "polyvore" / "sentence_vector" / "semantic.pkl"
    with open(path, "rb") as f:
        sem = pickle.load(f)
    sem = {k: np.full_like(np.asarray(v), np.nan) for k, v in sem.items()}
    with open(path, "wb") as f:
        pickle.dump(sem, f)
    out = run(work, "train", "--cfg", write_cfg(work, "train"), "--no_visdom")
    assert "non-finite loss" in out.stderr and "epoch 0 step 0" in out.stderr
    assert not os.path.exists(work / "ck" / "run_latest.net")


def test_nan_weights_checkpoint_is_refused_at_evaluation(work):
    sd = torch.load(str(work / "m.net"), weights_only=True)
    sd["core.0.weight"].fill_(float("nan"))
    torch.save(sd, str(work / "m.net"))
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "non-finite outfit scores" in out.stderr and not (work / "results" / "r.npz").exists()


# ----- unwritable output ------------------------------------------------------------------
def test_unwritable_out_json_fails_before_work(work):
    (work / "afile").write_text("x")
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work), "--out_json", "afile/r.json")
    assert "afile/r.json" in out.stderr and "Testing for NDCG" not in out.stderr


def test_unwritable_checkpoint_folder_fails_before_training(work):
    (work / "ck").write_text("a file where the checkpoint folder should be")
    out = run(work, "train", "--cfg", write_cfg(work, "train"), "--no_visdom")
    assert "ck/run_latest.net" in out.stderr and "Train - Epoch" not in out.stderr


def test_unwritable_grid_and_export(work):
    (work / "afile").write_text("x")
    out = run(work, "recommend", "--cfg", write_cfg(work), "--grid", "afile/g.png")
    assert "afile/g.png" in out.stderr


# ----- malicious pickle --------------------------------------------------------------------
def test_malicious_semantic_pkl_runs_nothing(work):
    marker = work / "pwned"
    malicious(work / "data" / "polyvore" / "sentence_vector" / "semantic.pkl", marker)
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "semantic.pkl" in out.stderr and not marker.exists()


def test_malicious_checkpoint_runs_nothing(work):
    marker = work / "pwned"
    with open(work / "m.net", "wb") as f:
        pickle.dump(Marker(str(marker)), f, protocol=2)
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "m.net" in out.stderr and not marker.exists()


def test_malicious_result_file_runs_nothing(work):
    marker = work / "pwned"
    os.makedirs(work / "results")
    arr = np.empty(1, dtype=object)
    arr[0] = Marker(str(marker))
    with open(work / "results" / "r.npz", "wb") as f:
        np.savez(f, evil=arr)
    out = run(work, "evaluate-rank", "--cfg", write_cfg(work))
    assert "r.npz" in out.stderr and "move it away" in out.stderr and not marker.exists()


def test_malicious_coldstart_files_run_nothing(work):
    marker = work / "pwned"
    malicious(work / "big.npz", marker)
    big = _data("data/polyvore", phase="train", data_mode="TuplePair")
    name = write_cfg(work, net_param=dict(NET, name="ColdStart", use_visual=True, big_data_param=big,
                                          small_data_param=big, data_file="cs_cache.pkl",
                                          big_feature_file="big.npz", pretrained=False),
                     load_trained=None)
    malicious(work / "cs_cache.pkl", marker)
    out = run(work, "evaluate-rank", "--cfg", name)
    assert "big.npz" in out.stderr and not marker.exists()


# ----- kill -9, then resume ---------------------------------------------------------------
def _final_weights(path):
    return {k: v for k, v in torch.load(str(path), weights_only=True).items()}


def test_kill_during_checkpoint_write_keeps_old_file_and_resume_is_exact(work):
    straight = work / "straight"
    os.makedirs(straight)
    os.symlink(str(work / "data"), str(straight / "data"))
    run(straight, "train", "--cfg", write_cfg(straight, "train"), "--no_visdom", "--seed", "0", expect=0)

    one = write_cfg(work, "train", name="one.yaml", solver_param=dict(SOLVER, epochs=1))
    run(work, "train", "--cfg", one, "--no_visdom", "--seed", "0", expect=0)
    solver = work / "ck" / "run_latest.solver"
    before = solver.read_bytes()
    resume = write_cfg(work, "train", name="resume.yaml", resume="ck/run_latest.solver")
    env = dict(os.environ, XMODAL_PROGRESS="0", **{PAUSE_ENV: solver.name})
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([sys.executable, RUN, "train", "--cfg", resume, "--no_visdom", "--seed", "0"],
                            cwd=str(work), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert any(PAUSE_MESSAGE in line for line in proc.stderr), "training never reached a checkpoint write"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert solver.read_bytes() == before  # the old complete file, untouched
    leftovers = [f for f in os.listdir(work / "ck") if f.endswith(".tmp")]
    assert leftovers  # the interrupted temp file ...
    run(work, "train", "--cfg", resume, "--no_visdom", "--seed", "0", expect=0)
    assert not [f for f in os.listdir(work / "ck") if f.endswith(".tmp")]  # ... removed at the next start
    a = _final_weights(straight / "ck" / "run_latest.net")
    b = _final_weights(work / "ck" / "run_latest.net")
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_make_demo_data_unwritable_folder(work):
    (work / "afile").write_text("x")
    out = run(work, "afile/demo", script=os.path.join(REPO, "fhn", "make_demo_data.py"))
    assert "afile/demo" in out.stderr
