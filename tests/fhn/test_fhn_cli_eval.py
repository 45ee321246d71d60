"""run.py evaluation actions by path from another cwd: --out_json keys, result npz (ragged,
numpy 2), extract-features pickle layout, recommend == evaluate-rank scores, export."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from fhn.model import FashionNet
from fhn.param import NetParam
from fhn.results_file import read_result_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, "fhn", "scripts", "run.py")
NET = dict(num_users=4, dim=8, hash_types=3, use_semantic=True, use_visual=False)


@pytest.fixture(scope="module")
def workdir(demo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("fhn_cli")
    torch.manual_seed(0)
    net = FashionNet(NetParam(**NET), pretrained=False)
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.05)
    net.set_scale(2.0)
    os.makedirs(work / "models")
    torch.save(net.state_dict(), str(work / "models" / "m_best.net"))
    root = os.path.relpath(os.path.join(demo_root, "data", "polyvore"), str(work))
    data = dict(phase="test", batch_size=16, data_root=root, data_set="tuples_630",
                nega_mode="RandomFix", shuffle=False, num_workers=0, use_semantic=True,
                use_visual=False)
    cfgs = {
        "evaluate-accuracy": dict(data_param=dict(data, data_mode="PairWise"),
                                  net_param=dict(NET, name="FashionNet")),
        "evaluate-rank": dict(data_param=data, net_param=dict(NET, name="FashionNetDeploy")),
        "fitb": dict(fitb_data_param=dict(phase="test", num_cand=4, data_root=root, num_workers=0,
                                          use_semantic=True, use_visual=False),
                     net_param=dict(NET, name="FashionNetDeploy")),
        "extract-features": dict(data_param=dict(data, data_mode="TupleOnly"),
                                 net_param=dict(NET, name="FashionNetDeploy"),
                                 feature_file="features/m.npz"),
    }
    for action, cfg in cfgs.items():
        cfg.update(load_trained="models/m_best.net", result_file="results/m.npz", gpus=[],
                   log_level="INFO")
        os.makedirs(work / "cfg" / action, exist_ok=True)
        (work / "cfg" / action / "m.yaml").write_text(yaml.safe_dump(cfg))
    return work


class _Out(object):
    def __init__(self, stdout, stderr):
        self.stdout, self.stderr = stdout, stderr


def run(work, *args, capsys=None):
    """In-process run.py main() inside `work` (the by-path subprocess run is tested below)."""
    from fhn.scripts.run import main

    cwd = os.getcwd()
    os.chdir(str(work))
    try:
        assert main(list(args)) == 0
    finally:
        os.chdir(cwd)
    if capsys is not None:
        cap = capsys.readouterr()
        return _Out(cap.out, cap.err)
    return None


def run_by_path(work, *args):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, RUN] + list(args), cwd=str(work), env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_evaluate_actions_json_and_npz(workdir):
    run(workdir, "evaluate-accuracy", "--cfg", "cfg/evaluate-accuracy/m.yaml", "--out_json", "acc.json")
    # by path from the data folder, without PYTHONPATH
    out = run_by_path(workdir, "evaluate-rank", "--cfg", "cfg/evaluate-rank/m.yaml", "--out_json",
                      "rank.json")
    assert "- mean auc(binary):" in out.stderr
    run(workdir, "fitb", "--cfg", "cfg/fitb/m.yaml", "--out_json", "fitb.json")
    acc = json.load(open(workdir / "acc.json"))
    rank = json.load(open(workdir / "rank.json"))
    fitb = json.load(open(workdir / "fitb.json"))
    assert 0 <= acc["accuracy"] <= 1 and 0 <= acc["binary"] <= 1
    for key in ("mean_auc", "mean_auc_binary", "mean_ndcg", "mean_ndcg_binary", "avg_ndcg",
                "avg_ndcg_binary", "aucs", "aucs_binary", "posi_score", "nega_score",
                "posi_score_binary", "nega_score_binary", "average_ndcg", "average_ndcg_binary"):
        assert key in rank, key
    assert rank["average_ndcg"] == pytest.approx(np.mean(rank["mean_ndcg"]), rel=1e-12)
    assert rank["mean_auc"] == pytest.approx(np.mean(rank["aucs"]), rel=1e-12)
    assert 0 <= fitb["fitb_acc"] <= 1 and fitb["provenance"]["paper"] == "fhn"
    # one npz holds all three results; per-user lists come back from plain arrays (no pickle)
    z = read_result_file(workdir / "results" / "m.npz")
    assert {"accuracy", "binary", "fitb_acc", "mean_auc", "posi_score"} <= set(z)
    assert float(z["mean_auc"]) == pytest.approx(rank["mean_auc"])
    assert [list(x) for x in z["posi_score"]] == rank["posi_score"]
    # the printed line equals the json value
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("- mean auc:")][0]
    assert float(line.split(":")[1]) == pytest.approx(rank["mean_auc"], abs=6e-5)


def test_per_outfit_flag_gives_same_json(workdir):
    run(workdir, "evaluate-rank", "--cfg", "cfg/evaluate-rank/m.yaml", "--out_json", "r1.json")
    run(workdir, "evaluate-rank", "--cfg", "cfg/evaluate-rank/m.yaml", "--out_json", "r2.json",
        "--per_outfit")
    a, b = json.load(open(workdir / "r1.json")), json.load(open(workdir / "r2.json"))
    assert a["mean_auc_binary"] == b["mean_auc_binary"]
    assert a["mean_auc"] == pytest.approx(b["mean_auc"], abs=1e-9)


def test_extract_features_layout(workdir):
    run(workdir, "extract-features", "--cfg", "cfg/extract-features/m.yaml")
    with open(workdir / "features" / "m.npz", "rb") as f:
        data = pickle.load(f)
    assert set(data) == {"user_codes", "item_codes", "lambda_u", "lambda_i", "alpha"}
    assert data["user_codes"].shape == (4, 8) and set(np.unique(data["user_codes"])) <= {-1, 0, 1}
    name, (v, t) = next(iter(data["item_codes"].items()))
    assert name.endswith(".jpg") and v == [] and t.dtype == np.int8 and t.shape == (8,)
    assert data["lambda_u"].shape == (1, 8) and data["alpha"] == 1.0


def test_recommend_matches_evaluate_rank(workdir, capsys):
    run(workdir, "evaluate-rank", "--cfg", "cfg/evaluate-rank/m.yaml", "--out_json", "rank.json")
    rank = json.load(open(workdir / "rank.json"))
    out = run(workdir, "recommend", "--cfg", "cfg/evaluate-rank/m.yaml", "--user", "2", "--topk", "5",
              "--out_json", "rec.json", "--export", "codes.npz", capsys=capsys)
    rec = json.load(open(workdir / "rec.json"))
    scores = sorted(rank["posi_score_binary"][2] + rank["nega_score_binary"][2], reverse=True)[:5]
    assert [r["binary_score"] for r in rec["topk"]] == pytest.approx(scores, abs=1e-6)
    assert len(out.stdout.strip().splitlines()) == 5
    with np.load(workdir / "codes.npz") as z:
        assert z["user_codes"].shape == (4, 8) and z["item_codes_t_0"].dtype == np.int8


def test_missing_checkpoint_is_clear_error(workdir, capsys):
    from fhn.scripts.run import main

    cfg = yaml.safe_load(open(workdir / "cfg" / "evaluate-rank" / "m.yaml"))
    cfg["load_trained"] = "models/missing.net"
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    cwd = os.getcwd()
    os.chdir(str(workdir))
    try:
        assert main(["evaluate-rank", "--cfg", "bad.yaml"]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "missing.net" in err and "Traceback" not in err
