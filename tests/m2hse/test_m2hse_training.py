"""Training end to end on tiny synthetic data: loss goes down, checkpoints round-trip, --resume is
exact, the README command runs verbatim, bad layouts fail clearly, DDP with 2 gloo processes."""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.errors import InputError
from common.checkpoint import load_checkpoint, save_checkpoint
from common.vocab import deserialize_vocab
from m2hse import make_demo_data, test_global, train_global, train_local
from m2hse import data_provider as data
from m2hse.evaluation import evaluate
from m2hse.model import build_model
from m2hse.checkpoints import prefixed_state_dict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TINY = ['--embed_size', '16', '--word_dim', '8', '--cnn_dim', '32', '--bovw_dim', '20', '--device', 'cpu',
        '--learning_rate', '.01', '--seed', '0', '--log_step', '1', '--data_name', 'corel5k_precomp',
        '--vocab_path', './vocab', '--batch_size', '50']


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('m2hse_tiny'))
    make_demo_data.main(['--out_dir', root, '--n_train', '200', '--n_dev', '60', '--cnn_dim', '32',
                         '--bovw_dim', '20', '--n_classes', '4'])
    return root


@pytest.fixture
def workdir(demo_root, tmp_path, monkeypatch):
    for name in ('data', 'vocab'):
        os.symlink(os.path.join(demo_root, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _losses(logdir):
    return [float(line.split('loss: ')[1].split(';')[0]) for line in open(os.path.join(logdir, 'loss.log'))]


@pytest.mark.parametrize('level', ['global', 'local'])
def test_short_training_lowers_the_loss(level, workdir):
    grain = 'coarse' if level == 'global' else 'fine'
    script = train_global if level == 'global' else train_local
    best = script.main(['--data_path', './data/%s-grained-data' % grain, '--logger_name', 'run',
                        '--model_name', 'run', '--num_epochs', '3'] + TINY)
    losses = _losses('run')
    assert len(losses) == 12  # 3 epochs x 4 batches of 50
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])
    assert best > 0.6  # dev mAP_sum; random scores give about 0.55 on these 4 classes
    assert glob.glob('run/events.out.tfevents.*')  # TensorBoard
    perf = open('run/performance.log').read()
    assert perf.count('Image to text:') == 4 and 'save best model' in perf  # dev eval before training too
    ckpt = load_checkpoint('run/model.pth.tar')
    assert set(ckpt) >= {'epoch', 'model', 'best_mAP_sum', 'opt'} and ckpt['epoch'] == 3
    assert all(k.startswith('module.%s_' % level) for k in ckpt['model'])
    assert os.path.isfile('run/model_best.pth.tar')


def test_checkpoint_round_trip_scores_identically(workdir, tmp_path):
    vocab = deserialize_vocab('vocab/corel5k_precomp_vocab.json')
    from m2hse import opts
    opt = opts.parse_opt(['--data_path', './data/coarse-grained-data'] + TINY)
    opt.vocab_size = len(vocab)
    model = build_model('global', opt)
    loader = data.get_test_loader('global', vocab, opt)
    direct = evaluate('global', model, loader, opt).sims
    save_checkpoint({'epoch': 1, 'model': prefixed_state_dict(model), 'best_mAP_sum': np.float64(0), 'opt': opt},
                    str(tmp_path / 'c.pth.tar'))
    test_global.main(['--data_path', './data/coarse-grained-data', '--model_path', str(tmp_path / 'c.pth.tar'),
                      '--out_scores', str(tmp_path / 's.npy'), '--device', 'cpu'])
    assert np.array_equal(np.load(tmp_path / 's.npy'), direct)


def test_resume_continues_exactly(workdir):
    common = ['--data_path', './data/coarse-grained-data'] + TINY
    train_global.main(common + ['--logger_name', 'a', '--model_name', 'a', '--num_epochs', '2'])
    train_global.main(common + ['--logger_name', 'b', '--model_name', 'b', '--num_epochs', '1'])
    train_global.main(common + ['--logger_name', 'b', '--model_name', 'b', '--num_epochs', '2',
                                '--resume', 'b/model.pth.tar', '--seed', '123'])  # seed comes from the ckpt
    a, b = load_checkpoint('a/model.pth.tar'), load_checkpoint('b/model.pth.tar')
    assert a['epoch'] == b['epoch'] == 2
    for key in a['model']:
        assert torch.equal(a['model'][key], b['model'][key]), key
    assert _losses('a') == _losses('b')


def test_readme_command_runs_verbatim(workdir):
    readme = ('--data_path ./data/coarse-grained-data --data_name corel5k_precomp --vocab_path ./vocab '
              '--logger_name ./checkpoint/M2HSE/Global/Corel5K --model_name ./checkpoint/M2HSE/Global/Corel5K '
              '--num_epochs 100 --lr_updata 50 --batchsize 100 --gamma_1 1 --gamma_2 .5 --alpha_1 .8 --alpha_2 .8')
    # the README command verbatim, then only size/length overrides for a CPU test
    train_global.main(readme.split() + ['--num_epochs', '1', '--embed_size', '16', '--word_dim', '8',
                                        '--cnn_dim', '32', '--bovw_dim', '20', '--device', 'cpu'])
    opt = load_checkpoint('checkpoint/M2HSE/Global/Corel5K/model.pth.tar')['opt']
    assert (opt.lr_update, opt.batch_size, opt.alpha_1, opt.vocab_size) == (50, 100, 0.8, 264)


def test_missing_feature_file_is_named_up_front(workdir, tmp_path):
    shutil.copytree('data/fine-grained-data', tmp_path / 'broken', symlinks=False)
    os.remove(tmp_path / 'broken' / 'corel5k_precomp' / 'dev_bovws.npy')
    with pytest.raises(InputError, match=r'dev_bovws.npy \(expected a .npy array of shape \(60, 9, 20\)\)'):
        train_local.main(['--data_path', str(tmp_path / 'broken'), '--logger_name', 'x', '--model_name', 'x'] + TINY)
    with pytest.raises(InputError, match=r'train_cnns.npy has shape \(200, 9, 32\), expected \(200, 32\)'):
        train_global.main(['--data_path', './data/fine-grained-data', '--logger_name', 'x', '--model_name', 'x'] + TINY)


def test_entry_script_runs_by_path_from_another_directory(tmp_path):
    up = os.path.join(HERE, 'data', 'upstream')
    out = subprocess.run([sys.executable, os.path.join(REPO, 'm2hse', 'test_global.py'), '--data_path',
                          os.path.join(up, 'global'), '--model_path', os.path.join(up, 'upstream_global.pth.tar'),
                          '--vocab_path', os.path.join(REPO, 'm2hse', 'vocab'), '--out_json', 'r.json'],
                         cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert out.returncode == 0, out.stderr
    assert json.load(open(tmp_path / 'r.json'))['n_images'] == 12
    bad = subprocess.run([sys.executable, os.path.join(REPO, 'm2hse', 'test_local.py'), '--model_path', 'nope.tar'],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and 'nope.tar: checkpoint file not found' in bad.stderr
    assert 'Traceback' not in bad.stderr


@pytest.mark.slow
def test_ddp_two_gloo_processes(demo_root, tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), 'torchrun')
    import socket
    with socket.socket() as sock:  # a free port, so parallel test runs do not collide
        sock.bind(('127.0.0.1', 0))
        port = str(sock.getsockname()[1])
    cmd = [torchrun, '--nproc_per_node', '2', '--master_port', port, os.path.join(REPO, 'm2hse', 'train_global.py'),
           '--data_path', os.path.join(demo_root, 'data', 'coarse-grained-data'), '--logger_name', 'ddp',
           '--model_name', 'ddp', '--num_epochs', '1'] + TINY[:-1] + ['25']
    cmd[cmd.index('./vocab')] = os.path.join(demo_root, 'vocab')
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ckpt = load_checkpoint(str(tmp_path / 'ddp' / 'model.pth.tar'))
    assert ckpt['epoch'] == 1 and all(k.startswith('module.global_') for k in ckpt['model'])
    assert len(_losses(str(tmp_path / 'ddp'))) == 4  # 200 items / 2 ranks / batch 25 per rank


def _predict(level, *extra):
    from m2hse import predict
    up = os.path.join(HERE, 'data', 'upstream')
    return predict.main(['--model_path', os.path.join(up, 'upstream_%s.pth.tar' % level), '--data_path',
                         os.path.join(up, level), '--vocab_path', os.path.join(REPO, 'm2hse', 'vocab'), '--top_k', '3']
                        + list(extra))


@pytest.mark.parametrize('level', ['global', 'local'])
def test_predict_tag_query_ranks_images(level, capsys):
    res = _predict(level, '--query', 'sky jet plane')
    assert len(res['images']) == 3
    # the query equals captions 10/11; in the local model (no batch-padding effect) it scores like them
    if level == 'local':
        sims = np.load(os.path.join(HERE, 'data', 'upstream', 'upstream_local_sims.npy'))
        assert res['images'][0] == int(np.argmax(sims[:, 10]))
    assert 'top-3 images for "sky jet plane"' in capsys.readouterr().out


@pytest.mark.parametrize('level', ['global', 'local'])
def test_predict_image_query_ranks_captions(level):
    assert len(_predict(level, '--image_index', '0')['captions']) == 3


@pytest.mark.parametrize('level', ['global', 'local'])
def test_predict_export_writes_the_split_embeddings(level, tmp_path):
    _predict(level, '--export', str(tmp_path / 'e.npz'))
    emb = np.load(tmp_path / 'e.npz')
    assert emb['images'].shape == ((12, 16) if level == 'global' else (12, 9, 16)) and emb['labels'].shape == (12,)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_amp_training_step(workdir):
    best = train_local.main(['--data_path', './data/fine-grained-data', '--logger_name', 'g', '--model_name', 'g',
                             '--num_epochs', '1'] + TINY[:TINY.index('--device')] + TINY[TINY.index('--device') + 2:]
                            + ['--device', 'cuda', '--amp'])
    assert best > 0 and np.isfinite(_losses('g')).all()
