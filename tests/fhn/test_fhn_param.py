"""YAML -> param objects: defaults, the data-param merge rule, unknown keys, shipped configs."""
import glob
import os

import pytest
import yaml

from fhn.param import DataParam, FashionParam, FITBDataParam, NetParam, SolverParam

CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fhn", "cfg")


def test_defaults_and_inferred_paths():
    p = DataParam()
    assert (p.phase, p.data_set, p.data_mode, p.nega_mode, p.batch_size, p.num_workers) == \
        ("train", "tuples_630", "PairWise", "RandomOnline", 64, 8)
    assert p.shuffle is True and p.image_root == "data/polyvore" and p.image_size == 291
    assert p.cate_map == [0, 1, 2] and not p.variable_length
    assert p.posi_fn == os.path.join("data/polyvore", "tuples_630", "tuples_train_posi")
    assert p.lmdb_dir == os.path.join("data/polyvore", "images/lmdb")
    assert DataParam(phase="test", nega_mode="HardFix").nega_fn.endswith("tuples_test_nega_hard")
    v = DataParam(data_set="tuples_519", phase="val")
    assert v.variable_length and v.cate_map == [0, 0, 1, 2] and v.shuffle is False
    n = NetParam()
    assert (n.name, n.num_users, n.dim, n.hash_types, n.backbone, n.margin) == \
        ("FashionNet", 630, 128, 0, "alexnet", None)
    assert NetParam(num_users=32).cate_map == [0, 0, 1, 2]
    assert NetParam(use_semantic=True, use_visual=True).margin == 0.1
    f = FITBDataParam()
    assert f.num_cand == 4 and f.shuffle is False and f.fitb_fn.endswith("fill_in_blank_test")
    s = SolverParam()
    assert (s.gamma, s.display, s.epochs, s.checkpoints) == (0.1, 10, 100, "./checkpoints")
    assert s.optim_param.grad_param == {"momentum": 0.9}


def test_merge_rule_common_data_param_wins():
    cfg = FashionParam(
        data_param=dict(batch_size=8, phase="test"),
        train_data_param=dict(phase="train", batch_size=64, shuffle=True),
        test_data_param=dict(phase="val"),
    )
    assert cfg.data_param is None
    # the common keys override the split-specific ones (upstream param.py:497-498)
    assert cfg.train_data_param.phase == "test" and cfg.train_data_param.batch_size == 8
    assert cfg.test_data_param.phase == "test" and cfg.train_data_param.shuffle is True


def test_solver_gpus_override_top_level():
    cfg = FashionParam(gpus=[3], solver_param=dict(gpus=[0, 1]))
    assert cfg.gpus == [0, 1]
    assert FashionParam(gpus=[2]).gpus == [2]


def test_unknown_key_raises_keyerror():
    with pytest.raises(KeyError, match="bogus"):
        DataParam(bogus=1)
    with pytest.raises(KeyError):
        FITBDataParam(batch_size=4)  # FITB has no batch_size key
    with pytest.raises(KeyError):
        SolverParam(optim_param=dict(name="RMSprop"))


def test_instances_do_not_share_defaults():
    """Upstream shares the class-level dict (quirk 13); the port keeps instances apart."""
    DataParam(batch_size=7, data_root="elsewhere")
    assert DataParam().batch_size == 64 and DataParam().image_root == "data/polyvore"


def test_lr_groups_broadcast():
    s = SolverParam(optim_param=dict(lr=[1, 2, 3], weight_decay=0.5))
    assert s.optim_param.groups == [dict(lr=1, weight_decay=0.5), dict(lr=2, weight_decay=0.5),
                                    dict(lr=3, weight_decay=0.5)]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CFG, "*", "*.yaml"))))
def test_shipped_configs_parse(path):
    with open(path) as f:
        cfg = FashionParam(**yaml.load(f, Loader=yaml.FullLoader))
    assert cfg.net_param is not None
    assert cfg.net_param.hash_types == 3


def test_shipped_configs_equal_upstream_copies():
    shared = "/work/shared/data/fhn/cfg"
    if not os.path.isdir(shared):
        pytest.skip("upstream configs not available at %s" % shared)
    for path in glob.glob(os.path.join(shared, "*", "*.yaml")):
        ours = os.path.join(CFG, os.path.relpath(path, shared))
        with open(path) as a, open(ours) as b:
            assert yaml.safe_load(a) == yaml.safe_load(b), ours


def test_run_py_reports_unknown_key_with_line(tmp_path, capsys):
    from fhn.scripts.run import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("net_param:\n  name: FashionNet\n  dimm: 3\n")
    assert main(["evaluate-rank", "--cfg", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:3" in err and "net_param.dimm" in err
