"""Live plots offline: the port's visdom server (npm assets) + headless Chromium sees the
loss window drawn while a short training run is going on."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fhn.scripts.visdom_server import assets_ready, default_cache_dir
from tests.browser import CHROMIUM, CHROMIUM_FLAGS as FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_port(port, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


def _dump_dom(url, profile):
    out = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % profile,
                                               "--virtual-time-budget=15000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def test_chromium_sees_loss_window_during_training(demo_root, make_data_cfg, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    if not assets_ready(default_cache_dir()):
        pytest.skip("visdom web assets not fetched: run `python fhn/scripts/visdom_server.py "
                    "--fetch_only` once (needs the npm registry)")
    import numpy as np
    import torch

    from fhn.data import get_dataloader
    from fhn.model import get_net
    from fhn.param import FashionParam
    from fhn.train import FashionNetSolver

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "fhn", "scripts", "visdom_server.py"), "--port", str(port),
         "-env_path", str(tmp_path / "env"), "-logging_level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_port(port, server), "visdom server did not start"
        env = "fhn_browser_test"
        cfg = FashionParam(
            data_param=make_data_cfg(demo_root, batch_size=4),
            train_data_param=dict(phase="train", shuffle=True),
            test_data_param=dict(phase="val", shuffle=False),
            net_param=dict(num_users=4, dim=8, hash_types=3, use_semantic=True),
            solver_param=dict(name="FashionNetSolver", display=1, epochs=4, gpus=[],
                              checkpoints=str(tmp_path / "ck"), visdom_port=port, visdom_env=env,
                              visdom_title="fhn browser test", optim_param=dict(lr=0.01)),
        )
        torch.manual_seed(0)
        np.random.seed(0)
        solver = FashionNetSolver(cfg.solver_param, get_net(cfg), get_dataloader(cfg.train_data_param),
                                  get_dataloader(cfg.test_data_param), torch.device("cpu"))
        assert solver.tracer.vis is not None
        errors = []

        def train():
            try:
                solver.run()
            except Exception as err:  # noqa: BLE001
                errors.append(err)

        thread = threading.Thread(target=train)
        thread.start()
        try:
            while solver.iter < 2 and thread.is_alive():
                time.sleep(0.1)
            dom = _dump_dom("http://127.0.0.1:%d/env/%s" % (port, env), tmp_path / "chromium")
            during = thread.is_alive()
        finally:
            thread.join()
        assert not errors
        # the loss window: plotly plot with the original legend and title
        assert "js-plotly-plot" in dom and "Train Loss(*)" in dom and "fhn browser test" in dom
        assert dom.count('class="window"') >= 3  # loss, accuracy, rank
        assert during or solver.last_epoch == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
