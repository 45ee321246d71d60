"""Fork's `test` action, result_dir outputs, unknown action exit code, GPUs named without CUDA, AMP on CUDA."""
import os

import numpy as np
import pytest
import torch
import yaml


def _in(work, argv):
    from fhn.scripts.run import main

    cwd = os.getcwd()
    os.chdir(str(work))
    try:
        return main(argv)
    finally:
        os.chdir(cwd)


def test_test_action_prints_one_batch(demo_root, make_data_cfg, tmp_path, capsys):
    cfg = dict(data_param=make_data_cfg(demo_root, phase="test", data_mode="PosiOnly", batch_size=5,
                                        nega_mode="RandomFix"),
               net_param=dict(num_users=4, use_semantic=True))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    assert _in(tmp_path, ["test", "--cfg", "t.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3" and out[1] == "torch.Size([5, 2400])" and out[-1] == "torch.Size([5, 4])"


def test_unknown_action_exit_1(tmp_path):
    assert _in(tmp_path, ["retrieval", "--cfg", "x.yaml"]) == 1


def test_result_dir_ranked_outfits(demo_root, make_data_cfg, tmp_path):
    from fhn.model import FashionNetDeploy
    from fhn.param import NetParam

    net = dict(name="FashionNetDeploy", num_users=4, dim=8, hash_types=3, use_semantic=True)
    torch.save(FashionNetDeploy(NetParam(**net)).state_dict(), str(tmp_path / "m.net"))
    cfg = dict(data_param=make_data_cfg(demo_root, phase="test", nega_mode="RandomFix"),
               net_param=net, load_trained="m.net", result_dir="rank", gpus=[])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    assert _in(tmp_path, ["evaluate-rank", "--cfg", "r.yaml"]) == 0
    labels = np.loadtxt(tmp_path / "rank" / "label" / "user-002.txt")
    assert labels.shape == (12,) and labels.sum() == 3  # 3 positives, 9 negatives
    assert np.loadtxt(tmp_path / "rank" / "ndcg.txt").shape == (4,)
    tops = sorted(os.listdir(tmp_path / "rank" / "outfit" / "user-000"))
    assert len(tops) == 12 and tops[0].startswith("top-000-")
    assert sorted(os.listdir(tmp_path / "rank" / "outfit" / "user-000" / tops[0])) == \
        ["00.jpg", "01.jpg", "02.jpg"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_gpus_without_cuda_warns_once_and_runs_on_cpu():
    from fhn.model import resolve_device

    with pytest.warns(RuntimeWarning) as rec:
        assert resolve_device([0, 1]).type == "cpu"
    assert len(rec) == 1
    assert resolve_device([]).type == "cpu" and resolve_device(None).type == "cpu"


@pytest.mark.cuda
def test_amp_training_step_on_cuda(demo_root, make_data_cfg, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from fhn.data import get_dataloader
    from fhn.model import get_net
    from fhn.param import FashionParam
    from fhn.train import FashionNetSolver

    cfg = FashionParam(
        data_param=make_data_cfg(demo_root, batch_size=8),
        train_data_param=dict(phase="train"), test_data_param=dict(phase="val"),
        net_param=dict(num_users=4, dim=8, hash_types=3, use_semantic=True),
        solver_param=dict(name="FashionNetSolver", epochs=1, gpus=[0], amp=True, visdom_port=1,
                          checkpoints=str(tmp_path / "ck"), optim_param=dict(lr=0.01)))
    dev = torch.device("cuda", 0)
    solver = FashionNetSolver(cfg.solver_param, get_net(cfg, dev), get_dataloader(cfg.train_data_param),
                              get_dataloader(cfg.test_data_param), dev)
    solver.run()
    assert np.isfinite(solver.best_loss)
