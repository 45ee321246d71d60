"""Training: loss goes down, full resume, visdom-less warning, TensorBoard scalars, CLI train."""
import glob
import logging
import os

import numpy as np
import pytest
import torch

from fhn.data import get_dataloader
from fhn.model import get_net
from fhn.param import FashionParam
from fhn.train import FashionNetSolver


def _cfg(root, make_data_cfg, tmp_path, epochs=3, **solver):
    data = make_data_cfg(root, batch_size=8, nega_mode="RandomOnline")
    return FashionParam(
        data_param=data,
        train_data_param=dict(phase="train", shuffle=True),
        test_data_param=dict(phase="val", shuffle=False),
        net_param=dict(name="FashionNet", num_users=4, dim=8, hash_types=3, use_semantic=True,
                       use_visual=False),
        solver_param=dict(dict(
            name="FashionNetSolver", display=2, epochs=epochs, gamma=1.0, gpus=[],
            checkpoints=str(tmp_path / "ckpt" / "fhn_test"), visdom_port=1,
            optim_param=dict(name="SGD", lr=[5, 0.01, 0.01], weight_decay=1e-6,
                             grad_param=dict(momentum=0.9), lr_scheduler="ReduceLROnPlateau",
                             scheduler_param=dict(cooldown=10, factor=0.5, patience=10,
                                                  threshold=0.05))), **solver),
    )


def _solver(cfg, seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    train = get_dataloader(cfg.train_data_param)
    val = get_dataloader(cfg.test_data_param)
    net = get_net(cfg, "cpu")
    return FashionNetSolver(cfg.solver_param, net, train, val, torch.device("cpu"))


def test_short_training_lowers_loss_and_writes_tensorboard(demo_root, make_data_cfg, tmp_path, caplog):
    cfg = _cfg(demo_root, make_data_cfg, tmp_path, epochs=6)
    with caplog.at_level(logging.WARNING):
        solver = _solver(cfg)
    warnings = [r for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(warnings) == 1  # one warning, no visdom, training goes on
    solver.run()
    hist = solver.tracer.get_meter("train", "loss")
    losses = np.array(hist.y)
    per_epoch = len(losses) // 6
    assert losses[-per_epoch:].mean() < losses[:per_epoch].mean() - 0.05
    test_loss = solver.tracer.get_meter("test", "loss").y
    assert len(test_loss) == 6 and min(test_loss[3:]) < test_loss[0]
    assert os.path.isfile(str(tmp_path / "ckpt" / "fhn_test_best.net"))
    state = torch.load(str(tmp_path / "ckpt" / "fhn_test_latest.net"), weights_only=True)
    assert list(state) == list(solver.net.state_dict())
    # scale buffer = sqrt(epoch * gamma + 1) of the last epoch (5)
    assert state["user_embedding.scale"].item() == pytest.approx(6 ** 0.5)
    from common import logger
    logger.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "ckpt" / "fhn_test_tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/binary_loss", "train/accuracy", "train/binary_accuracy",
            "test/loss", "test/binary_loss", "test/accuracy", "test/binary_accuracy",
            "test/auc", "test/binary_auc", "test/ndcg", "test/binary_ndcg"} <= tags
    assert len(acc.Scalars("test/loss")) == 6


def test_resume_restores_full_state(demo_root, make_data_cfg, tmp_path):
    straight = _solver(_cfg(demo_root, make_data_cfg, tmp_path / "a", epochs=3))
    straight.run()
    first = _solver(_cfg(demo_root, make_data_cfg, tmp_path / "b", epochs=2))
    first.run()
    cfg = _cfg(demo_root, make_data_cfg, tmp_path / "b", epochs=3)
    second = _solver(cfg, seed=123)  # different seed: everything must come from the file
    second.resume(cfg.solver_param.checkpoints + "_latest.solver")
    assert second.last_epoch == 1 and second.iter == first.iter
    assert second.best_loss == first.best_loss
    assert second.lr_scheduler.state_dict() == first.lr_scheduler.state_dict()
    assert str(second.optimizer.state_dict()) == str(first.optimizer.state_dict())
    second.run()
    assert second.last_epoch == 2
    for k, v in straight.net.state_dict().items():
        torch.testing.assert_close(second.net.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_step_lr_closed_form_one_epoch_late(demo_root, make_data_cfg, tmp_path):
    cfg = _cfg(demo_root, make_data_cfg, tmp_path, epochs=3)
    cfg.solver_param.optim_param.lr_scheduler = "StepLR"
    cfg.solver_param.optim_param.scheduler_param = dict(step_size=1, gamma=0.5)
    solver = _solver(cfg)
    solver.step()  # epoch 0: step(0) -> lr = base * 0.5 ** 0
    assert solver.optimizer.param_groups[0]["lr"] == pytest.approx(5.0)
    solver.step()  # epoch 1 -> base * 0.5 ** 1
    assert solver.optimizer.param_groups[0]["lr"] == pytest.approx(2.5)


def test_cli_train_by_path_from_other_cwd(demo_root, make_data_cfg, tmp_path):
    import subprocess
    import sys

    import yaml

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg = _cfg(demo_root, make_data_cfg, tmp_path, epochs=1)
    raw = dict(
        data_param=make_data_cfg(demo_root, batch_size=8),
        train_data_param=dict(phase="train", shuffle=True),
        test_data_param=dict(phase="val", shuffle=False),
        net_param=dict(name="FashionNet", num_users=4, dim=8, hash_types=3, use_semantic=True),
        solver_param=dict(name="FashionNetSolver", epochs=1, gpus=[0], checkpoints="ck/run",
                          visdom_port=1, optim_param=dict(lr=0.01, scheduler_param=dict(step_size=5))),
        log_file="logs/train.log",
    )
    del cfg
    work = tmp_path / "work"
    work.mkdir()
    (work / "t.yaml").write_text(yaml.safe_dump(raw))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, os.path.join(repo, "fhn", "scripts", "run.py"), "train",
                          "--cfg", "t.yaml", "--device", "cpu"], cwd=str(work), env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(os.path.basename(p) for p in glob.glob(str(work / "ck" / "*"))) == \
        ["run_best.net", "run_latest.net", "run_latest.solver", "run_tb"]
    assert (work / "logs" / "train.log").read_text().count("epoch: 0, time cost") == 1
