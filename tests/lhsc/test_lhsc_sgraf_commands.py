"""SGRAF's README commands run as written from lhsc/sgraf/ and train/evaluate SGRAF (its flags,
defaults and checkpoint format); in lhsc/ an SGRAF-only flag without --model SGRAF is an error."""
import os
import subprocess
import sys

import pytest

from common.checkpoint import load_checkpoint
from lhsc import make_demo_data
from lhsc.sgraf.opts import build_parser as sgraf_parser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SGRAF_DIR = os.path.join(REPO, 'lhsc', 'sgraf')
SMALL = ['--img_dim', '8', '--word_dim', '8', '--embed_size', '8', '--sim_dim', '8', '--batch_size', '30']
ENV = dict(os.environ, OMP_NUM_THREADS='1', XMODAL_PROGRESS='0')


@pytest.fixture(scope='module')
def sgraf_run(tmp_path_factory):
    """SGRAF README's Flickr30K SAF command (fewer epochs, tiny dims) run in a copy of its cwd."""
    root = tmp_path_factory.mktemp('sgraf')
    make_demo_data.main(['--out_dir', str(root / 'data'), '--img_dim', '8', '--n_train', '30', '--n_dev', '10',
                         '--n_test', '10', '--seed', '1'])
    cmd = [sys.executable, os.path.join(SGRAF_DIR, 'train.py'), '--data_name', 'f30k_precomp', '--num_epochs', '1',
           '--lr_update', '30', '--module_name', 'SAF', '--data_path', 'data'] + SMALL
    done = subprocess.run(cmd, cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, done


def test_sgraf_defaults_are_sgrafs():
    opt = sgraf_parser().parse_args([])
    assert (opt.num_epochs, opt.workers, opt.lr_update, opt.module_name, opt.sgr_step) == (40, 10, 30, 'SGR', 3)
    assert opt.data_path == '/apdcephfs/share_1313228/home/haiwendiao'
    assert opt.model_name == './runs/f30k_SGR/checkpoint' and not hasattr(opt, 'model')
    assert opt.max_violation is True and opt.bi_gru is True  # store_false, as upstream


def test_sgraf_train_writes_an_sgraf_checkpoint(sgraf_run):
    root, done = sgraf_run
    ckpt = load_checkpoint(str(root / 'runs' / 'f30k_SGR' / 'checkpoint' / 'model_best.pth.tar'))
    assert {'epoch', 'model', 'best_rsum', 'opt', 'Eiters'} <= set(ckpt)
    opt = ckpt['opt']
    assert opt.module_name == 'SAF' and not hasattr(opt, 'model') and opt.workers == 10
    assert any(k.startswith('SAF_module.') for k in ckpt['model'][2])
    assert not any(k.startswith('cal_sim_base_atten') for k in ckpt['model'][2])
    assert os.listdir(root / 'runs' / 'f30k_SGR' / 'log')


def test_sgraf_evaluation_evaluates_the_sgraf_checkpoint(sgraf_run):
    root, _ = sgraf_run
    cmd = [sys.executable, os.path.join(SGRAF_DIR, 'evaluation.py'), '--model_path',
           'runs/f30k_SGR/checkpoint/model_best.pth.tar', '--data_path', 'data', '--out_json', 'e.json']
    done = subprocess.run(cmd, cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'Average i2t Recall' in done.stdout and 'rsum:' in done.stdout
    assert (root / 'e.json').exists()


def test_sgraf_evaluation_refuses_an_lhsc_checkpoint(tmp_path):
    legacy = os.path.join(REPO, 'tests', 'lhsc', 'data', 'upstream', 'lhsc_legacy.pth.tar')
    cmd = [sys.executable, os.path.join(SGRAF_DIR, 'evaluation.py'), '--model_path', legacy]
    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert 'is an LHSC checkpoint; evaluate it with lhsc/evaluation.py' in done.stderr
    assert 'Traceback' not in done.stderr


@pytest.mark.parametrize('flag', [['--module_name', 'SAF'], ['--sgr_step', '2']])
def test_lhsc_train_refuses_sgraf_only_flags_without_model_sgraf(tmp_path, flag):
    cmd = [sys.executable, os.path.join(REPO, 'lhsc', 'train.py'), '--data_name', 'f30k_precomp',
           '--num_epochs', '40', '--lr_update', '30'] + flag
    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert '%s only mean(s) something for SGRAF' % flag[0] in done.stderr
    assert 'add --model SGRAF' in done.stderr and 'Traceback' not in done.stderr
    assert not (tmp_path / 'runs').exists()
