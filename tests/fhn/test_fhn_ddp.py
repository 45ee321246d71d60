"""torchrun DDP on CPU: 2 gloo processes train, rank 0 writes the checkpoints."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from common.checkpoint import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_torchrun_two_gloo_processes(demo_root, make_data_cfg, tmp_path):
    cfg = dict(
        data_param=make_data_cfg(demo_root, batch_size=4),
        train_data_param=dict(phase="train", shuffle=True),
        test_data_param=dict(phase="val", shuffle=False),
        net_param=dict(name="FashionNet", num_users=4, dim=8, hash_types=3, use_semantic=True),
        solver_param=dict(name="FashionNetSolver", epochs=2, gpus=[], checkpoints="ck/ddp",
                          visdom_port=1, optim_param=dict(lr=0.01, scheduler_param=dict(step_size=5))),
        log_file="logs/ddp.log",
    )
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         os.path.join(REPO, "fhn", "scripts", "run.py"), "train", "--cfg", "ddp.yaml", "--device", "cpu",
         "--seed", "0"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(str(tmp_path / "ck" / "ddp_latest.net"), weights_only=True)
    assert "user_embedding.encoder.weight" in state  # no "module." prefix
    solver = load_checkpoint(str(tmp_path / "ck" / "ddp_latest.solver"))
    assert solver["state"]["last_epoch"] == 1
    # 24 train pairs, batch 4, 2 ranks -> 3 iterations per epoch per rank
    assert solver["state"]["iter"] == 6
