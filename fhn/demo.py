#!/usr/bin/env python
"""End-to-end demo: tiny data -> train FHN-T3 (visual only) on CPU -> evaluate-accuracy, evaluate-rank, fitb,
recommend (outfit grid PNG).

`python fhn/demo.py --out_dir DIR` runs the real entry scripts as subprocesses and
writes DIR/summary.json (rows: paper, command, metric, value, baseline, wall_s).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import yaml  # noqa: E402

from common.demo import run_step  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.safeio import write_json_atomic  # noqa: E402
from fhn.web.demo_data import serve_step  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "scripts", "run.py")

DATA = dict(data_root="data/polyvore", image_root="data/polyvore", data_set="tuples_630",
            num_workers=0, use_lmdb=True, use_semantic=False, use_visual=True, image_size=224)
# FHN-T3, visual only (cfg/train/FHN_T3_630_Adam.yaml), D=16, AlexNet at 224 px from random
# weights (no ImageNet weights offline: pretrained false)
NET = dict(name="FashionNet", num_users=4, dim=16, backbone="alexnet", hash_types=3,
           scale_tanh=True, use_semantic=False, use_visual=True, pretrained=False)
MODEL = "FHN-T3"


def demo_configs(epochs=5):
    """FHN-T3 configs with the original keys (cfg/train/FHN_T3_630_Adam.yaml), tiny sizes.

    Adam as in that config, with larger learning rates for the user codes, the encoders and
    the matching weights ([0.1, 1e-4, 3e-3, 0.01] instead of [0.01, 1e-4, 1e-4, 1e-3]): a
    random backbone and 20 steps need them. No `.solver` file (save_solver false): the demo
    does not resume and the Adam state of AlexNet is ~1 GB per epoch.
    """
    model = "checkpoints/fashion_hash_net_t3_demo"
    train = dict(
        data_param=dict(DATA, batch_size=6, nega_mode="RandomOnline", data_mode="PairWise"),
        train_data_param=dict(shuffle=True, data_mode="PairWise", phase="train"),
        test_data_param=dict(shuffle=False, data_mode="PairWise", phase="val"),
        net_param=dict(NET),
        solver_param=dict(
            name="FashionNetSolver", display=1, epochs=epochs, gamma=1.0, gpus=[],
            visdom_env="fashion_hash_net", visdom_title="fashion_hash_net_t3_demo",
            checkpoints=model, save_solver=False,
            optim_param=dict(name="Adam", lr=[0.1, 0.0001, 0.003, 0.01], weight_decay=1.0e-06,
                             grad_param=dict(betas=[0.9, 0.9999]), lr_scheduler="StepLR",
                             scheduler_param=dict(step_size=30, gamma=0.2))),
        log_file="logs/train/fashion_hash_net_t3_demo.log", log_level="INFO",
    )
    evaluate = dict(load_trained=model + "_best.net", result_file="results/fashion_hash_net_t3_demo.npz",
                    gpus=[], net_param=dict(NET, name="FashionNetDeploy"), log_level="INFO")
    acc = dict(evaluate, net_param=dict(NET),
               data_param=dict(DATA, phase="test", batch_size=64, data_mode="PairWise",
                               nega_mode="RandomFix", shuffle=False))
    rank = dict(evaluate, data_param=dict(DATA, phase="test", batch_size=64, nega_mode="RandomFix",
                                          shuffle=False))
    fitb = dict(evaluate, fitb_data_param=dict({k: v for k, v in DATA.items()}, phase="test",
                                               num_cand=4))
    return {"train": train, "evaluate-accuracy": acc, "evaluate-rank": rank, "fitb": fitb}


def run(cmd, cwd, log):
    return run_step(cmd, cwd, log=log).wall_s


def recommend_grid(py, out, log, user=0, topk=5):
    """recommend --grid: user 0's top outfits as a picture; the summary row links it."""
    rel = os.path.join("cfg", "evaluate-rank", "FHN_T3_demo.yaml")
    grid = os.path.join("results", "recommend_user%d.png" % user)
    cmd = [py, RUN, "recommend", "--cfg", rel, "--user", str(user), "--topk", str(topk),
           "--grid", grid, "--out_json", os.path.join("results", "recommend.json")]
    print("[fhn demo] recommend (outfit grid)", flush=True)
    wall = run(cmd, out, log)
    with open(os.path.join(out, "results", "recommend.json")) as f:
        top = json.load(f)["topk"]
    hits = sum(r["label"] for r in top)
    print("[fhn demo]   user %d: %d of the top %d are the user's positives; grid %s"
          % (user, hits, topk, os.path.join(out, grid)), flush=True)
    return dict(paper="fhn", command="python fhn/scripts/run.py recommend --cfg %s --user %d --topk %d --grid %s"
                % (rel, user, topk, grid), metric="recommend_top%d_positives" % topk, value=hits,
                baseline=None, wall_s=wall, links={"gallery_png": grid})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "demo.log")
    py = sys.executable
    t0 = time.time()
    print("[fhn demo] making data in %s" % out, flush=True)
    run([py, os.path.join(HERE, "make_demo_data.py"), out], out, log)
    rows = []
    for action, cfg in demo_configs(args.epochs).items():
        path = os.path.join(out, "cfg", action, "FHN_T3_demo.yaml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        rel = os.path.relpath(path, out)
        cmd = [py, RUN, action, "--cfg", rel, "--seed", "0"]
        if action == "train":
            cmd.append("--no_visdom")
        else:
            cmd += ["--out_json", "results/%s.json" % action]
        print("[fhn demo] %s" % action, flush=True)
        wall = run(cmd, out, log)
        command = "python fhn/scripts/run.py %s --cfg %s" % (action, rel)
        if action == "train":
            rows.append(dict(paper="fhn", command=command, metric="train_wall_s", value=wall,
                             baseline=None, wall_s=wall))
            continue
        with open(os.path.join(out, "results", "%s.json" % action)) as f:
            res = json.load(f)
        names = {"evaluate-accuracy": [("accuracy", 0.5), ("binary", 0.5)],
                 "evaluate-rank": [("mean_auc", 0.5), ("mean_auc_binary", 0.5),
                                   ("average_ndcg", None), ("average_ndcg_binary", None)],
                 "fitb": [("fitb_acc", 0.25)]}[action]
        for name, base in names:
            rows.append(dict(paper="fhn", command=command, metric=name, value=float(res[name]),
                             baseline=base, wall_s=wall))
            print("[fhn demo]   %s %s = %.4f (random: %s)" % (MODEL, name, res[name], base),
                  flush=True)
    rows.append(recommend_grid(py, out, log))
    rows.append(serve_step(out, os.path.join(out, "checkpoints", "fashion_hash_net_t3_demo_best.net"),
                           log))  # the web recommender on this net: a scripted session
    write_json_atomic(os.path.join(out, "summary.json"), rows)
    auc = [r["value"] for r in rows if r["metric"] == "mean_auc"][0]
    print("[fhn demo] done in %.1f s; %s mean AUC %.3f; summary: %s"
          % (time.time() - t0, MODEL, auc, os.path.join(out, "summary.json")), flush=True)
    if auc <= 0.6:
        print("[fhn demo] warning: AUC is not clearly above 0.5", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli_main(main)
