"""extract_outfits.py: a plain .npz (no pickle) whose outfit codes, user codes, lambdas and cold-start
features equal what the net computes outfit by outfit (upstream's extract_outfits / ColdStart arithmetic)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from common.safeio import load_npz
from fhn.data import get_dataloader
from fhn.model import get_net
from fhn.param import FashionParam
from fhn.web.recommender import Catalogue

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NET = dict(name="FashionNetDeploy", num_users=4, dim=8, backbone="alexnet", hash_types=3,
           use_semantic=True, use_visual=False, pretrained=False)


def _config(demo_root, make_data_cfg, checkpoint, **net):
    data = make_data_cfg(demo_root, phase="test", batch_size=16, nega_mode="RandomFix",
                         data_mode="PosiOnly", shuffle=False, use_semantic=True, use_visual=False)
    return dict(data_param=data, net_param=dict(NET, **net), load_trained=checkpoint, gpus=[])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = get_net(FashionParam(net_param=dict(NET)))
    path = str(tmp_path_factory.mktemp("fhn_ck") / "net.net")
    torch.save(net.state_dict(), path)
    return path


def _run(cfg, tmp_path, *extra):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, os.path.join(REPO, "fhn", "scripts", "extract_outfits.py"),
                           "extract-features", "--cfg", str(path), "--out", str(tmp_path / "o.npz")] + list(extra),
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))


def test_extract_outfits_writes_the_nets_codes(demo_root, make_data_cfg, checkpoint, tmp_path):
    cfg = _config(demo_root, make_data_cfg, checkpoint)
    proc = _run(cfg, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = load_npz(str(tmp_path / "o.npz"))  # refuses pickles / object arrays
    cat = Catalogue.load(str(tmp_path / "o.npz"))
    config = FashionParam(**cfg)
    net = get_net(config).eval()
    loader = get_dataloader(config.data_param)
    posi = loader.dataset.posi
    _, first = np.unique(posi, axis=0, return_index=True)
    tuples = posi[np.sort(first)]
    assert np.array_equal(out["outfit_items"], tuples)
    assert out["outfit_names"].tolist() == [loader.dataset.get_names(t) for t in tuples]
    # upstream: outfit = mean over the items of the binary (sign) text codes
    datum = loader.dataset.datum
    with torch.no_grad():
        for row, tpl in enumerate(tuples[:6]):
            feats = [torch.as_tensor(datum.load_semantics(c, int(i))).float()[None]
                     for c, i in zip(config.data_param.cate_map, tpl)]
            codes = net.compute_codes(feats)
            expect = sum(c[0].numpy().astype(np.int8).astype(np.float64) for c in codes) / len(codes)
            assert np.array_equal(out["outfit_codes"][row], expect)
    assert int(out["codes_per_outfit"]) == 3 and cat.planes == 3
    assert np.array_equal(out["user_codes"], net.sign(net.user_latent()).detach().numpy())
    lambda_i, lambda_u, _ = net.get_matching_weight()
    assert np.array_equal(out["lambda_u"], np.asarray(lambda_u).reshape(-1))
    assert np.array_equal(out["lambda_i"], np.asarray(lambda_i).reshape(-1))
    assert out["posi_feat"].shape == (4, 8) and np.abs(out["posi_feat"]).max() <= 1
    assert not np.array_equal(out["posi_feat"], out["nega_feat"])


def test_extract_outfits_bad_config_names_the_fix(demo_root, make_data_cfg, checkpoint, tmp_path):
    from common.errors import InputError
    from fhn.scripts.extract_outfits import main

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(demo_root, make_data_cfg, checkpoint, hash_types=1)))
    with pytest.raises(InputError, match="hash_types must be 3"):
        main(["extract-features", "--cfg", str(path), "--out", str(tmp_path / "o.npz")])
    cfg = _config(demo_root, make_data_cfg, checkpoint)
    del cfg["load_trained"]
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match="load_trained"):
        main(["extract-features", "--cfg", str(path), "--out", str(tmp_path / "o.npz")])
    assert main(["other-action", "--cfg", str(path)]) == 1
