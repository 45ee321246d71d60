"""Bad input to the real m2hse entry scripts (run as subprocesses on tiny data): one message naming the
file and what to do, exit 2, no traceback, nothing run from a data file, nothing lost."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from common.atomic import PAUSE_ENV, PAUSE_MESSAGE
from common.checkpoint import load_checkpoint, save_checkpoint
from m2hse import make_demo_data, train_global

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TINY = ['--embed_size', '8', '--word_dim', '8', '--cnn_dim', '16', '--bovw_dim', '10', '--device', 'cpu',
        '--seed', '0', '--data_name', 'corel5k_precomp', '--vocab_path', './vocab', '--batch_size', '20',
        '--log_step', '1', '--no_progress']
GLOBAL = './data/coarse-grained-data'
SPLIT = os.path.join('data', 'coarse-grained-data', 'corel5k_precomp')
ENV = dict(os.environ, OMP_NUM_THREADS='1', XMODAL_PROGRESS='0')


class Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    """Tiny demo data (60 train / 20 dev+test items) and a 1-epoch global checkpoint trained on it."""
    root = tmp_path_factory.mktemp('m2hse_faults')
    make_demo_data.main(['--out_dir', str(root), '--n_train', '60', '--n_dev', '20', '--cnn_dim', '16',
                         '--bovw_dim', '10', '--n_classes', '4'])
    cwd = os.getcwd()
    os.chdir(root)
    try:
        train_global.main(['--data_path', GLOBAL, '--logger_name', 'ckpt', '--model_name', 'ckpt',
                           '--num_epochs', '1'] + TINY)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def work(base, tmp_path):
    """A private copy of the data (tests break it) with the checkpoint."""
    for name in ('data', 'vocab', 'ckpt'):
        shutil.copytree(base / name, tmp_path / name)
    return tmp_path


def run(script, args, cwd, env=None):
    cmd = [sys.executable, os.path.join(REPO, 'm2hse', script)] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, env=env or ENV)


def assert_refused(out, *needles):
    assert out.returncode == 2, out.stdout[-1500:] + out.stderr[-1500:]
    assert 'Traceback' not in out.stderr, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def train(cwd, *extra):
    return run('train_global.py', ['--data_path', GLOBAL, '--logger_name', 'run', '--model_name', 'run',
                                   '--num_epochs', '1'] + TINY + list(extra), cwd)


def test_global(cwd, *extra, ckpt='ckpt/model_best.pth.tar'):
    return run('test_global.py', ['--data_path', GLOBAL, '--model_path', ckpt, '--device', 'cpu',
                                  '--no_progress'] + list(extra), cwd)


test_global.__test__ = False  # a helper, not a test


def predict(cwd, *extra):
    return run('predict.py', ['--checkpoint', 'ckpt/model_best.pth.tar', '--data_path', GLOBAL, '--top_k', '3',
                              '--no_progress'] + list(extra), cwd)


# ---------------------------------------------------------------- missing files
def test_train_missing_feature_file_is_named(work):
    os.remove(work / SPLIT / 'dev_bovws.npy')
    assert_refused(train(work), 'dev_bovws.npy')
    assert not (work / 'run' / 'model.pth.tar').exists()


def test_eval_missing_vocabulary_is_named(work):
    assert_refused(test_global(work, '--vocab_path', 'nowhere'), 'nowhere/corel5k_precomp_vocab.json')


def test_predict_missing_image_list_is_named(work):
    assert_refused(predict(work, '--query', 'sky', '--image_list', 'nope.txt'), 'nope.txt')


# ---------------------------------------------------------------- truncated / garbled files
def test_train_truncated_features_are_named(work):
    path = work / SPLIT / 'train_cnns.npy'
    path.write_bytes(path.read_bytes()[:500])
    assert_refused(train(work), 'train_cnns.npy', 'truncated')


def test_eval_truncated_checkpoint_is_named(work):
    path = work / 'ckpt' / 'model_best.pth.tar'
    path.write_bytes(path.read_bytes()[:2000])
    assert_refused(test_global(work), 'model_best.pth.tar', 'truncated or corrupt')


def test_train_non_utf8_captions_name_the_line(work):
    path = work / SPLIT / 'train_caps.txt'
    lines = path.read_bytes().split(b'\n')
    lines[2] = b'sky \xff\xfe water'
    path.write_bytes(b'\n'.join(lines))
    assert_refused(train(work), 'train_caps.txt, line 3', 'not valid UTF-8')


def test_eval_garbled_vocabulary_is_named(work):
    (work / 'vocab' / 'corel5k_precomp_vocab.json').write_text('{"word2idx": {"sky": 1,')
    assert_refused(test_global(work, '--vocab_path', 'vocab'), 'corel5k_precomp_vocab.json', 'not a usable vocabulary')


# ---------------------------------------------------------------- wrong shape
def test_eval_features_of_another_size_are_named(work):
    np.save(work / SPLIT / 'test_cnns.npy', np.zeros((20, 17), np.float32))
    assert_refused(test_global(work), 'test_cnns.npy has shape (20, 17), expected (20, 16)')


def test_train_labels_of_wrong_length_are_named(work):
    np.save(work / SPLIT / 'train_labels.npy', np.zeros((59, 1)))
    assert_refused(train(work), 'train_labels.npy has shape (59, 1), expected (60,) or (60, 1)')


# ---------------------------------------------------------------- vocabulary / config mismatch
def test_eval_port_checkpoint_with_another_vocabulary_is_refused(work):
    path = work / 'vocab' / 'corel5k_precomp_vocab.json'
    text = path.read_text()
    path.write_text(text.replace('"sky"', '"SKY-TMP"').replace('"water"', '"sky"').replace('"SKY-TMP"', '"water"'))
    assert_refused(test_global(work, '--vocab_path', 'vocab'), 'model_best.pth.tar', 'another vocabulary')


def test_resume_with_another_vocabulary_is_refused(work):
    path = work / 'vocab' / 'corel5k_precomp_vocab.json'
    path.write_text(path.read_text().replace('"sky"', '"skies"'))
    assert_refused(train(work, '--resume', 'ckpt/model.pth.tar', '--num_epochs', '2'), 'another vocabulary')


def test_eval_global_checkpoint_with_the_local_script_is_refused(work):
    out = run('test_local.py', ['--data_path', './data/fine-grained-data', '--model_path', 'ckpt/model_best.pth.tar',
                                '--vocab_path', 'vocab', '--device', 'cpu'], work)
    assert_refused(out, 'global-level checkpoint', 'test_global.py')


def test_train_zero_gamma_1_is_refused(work):
    assert_refused(train(work, '--gamma_1', '0'), '--gamma_1')


# ---------------------------------------------------------------- bad / foreign checkpoints
def test_eval_another_papers_checkpoint_is_refused(work):
    save_checkpoint({'model': [{'img_enc.fc.weight': torch.zeros(2, 2)}], 'opt': argparse.Namespace(),
                     'epoch': 3}, str(work / 'other.pth.tar'))
    assert_refused(test_global(work, ckpt='other.pth.tar'), 'other.pth.tar', 'not an M2HSE checkpoint')


def test_predict_file_that_is_not_a_checkpoint_is_refused(work):
    (work / 'notes.pth.tar').write_text('hello')
    assert_refused(predict(work, '--query', 'sky', '--checkpoint', 'notes.pth.tar'), 'notes.pth.tar',
                   'not a PyTorch checkpoint')


# ---------------------------------------------------------------- empty split
def test_eval_empty_split_is_an_error(work):
    (work / SPLIT / 'test_caps.txt').write_text('')
    for kind, shape in (('cnns', (0, 16)), ('bovws', (0, 10)), ('labels', (0, 1))):
        np.save(work / SPLIT / ('test_%s.npy' % kind), np.zeros(shape, np.float32))
    out = test_global(work)
    assert_refused(out, 'test_caps.txt', 'no captions')
    assert 'mAP' not in out.stdout


# ---------------------------------------------------------------- non-finite values
def test_train_nan_features_are_named_with_their_row(work):
    path = work / SPLIT / 'train_cnns.npy'
    feats = np.load(path)
    feats[7, 3] = np.nan
    np.save(path, feats)
    assert_refused(train(work), 'train_cnns.npy: row 7 holds NaN or inf')


def test_train_non_finite_loss_stops_with_epoch_and_step_and_saves_nothing(work):
    out = train(work, '--gamma_1', '1000')  # exp(gamma_2 - gamma_1 * s) overflows: the loss is inf - inf
    assert_refused(out, 'non-finite loss', 'epoch 0 step 1')
    assert not (work / 'run' / 'model.pth.tar').exists() and not (work / 'run' / 'model_best.pth.tar').exists()


def test_fuse_non_finite_scores_are_named(work):
    np.save(work / 'g.npy', np.full((20, 20), np.nan))
    np.save(work / 'l.npy', np.zeros((20, 20)))
    out = run('fuse.py', ['--global_scores', 'g.npy', '--local_scores', 'l.npy',
                          '--labels', os.path.join(SPLIT, 'test_labels.npy')], work)
    assert_refused(out, 'g.npy', 'NaN or inf')


# ---------------------------------------------------------------- unwritable outputs
def test_train_unwritable_model_name_fails_before_training(work):
    (work / 'afile').write_text('x')
    out = run('train_global.py', ['--data_path', GLOBAL, '--logger_name', 'run', '--model_name', 'afile/sub',
                                  '--num_epochs', '1'] + TINY, work)
    assert_refused(out, 'afile/sub/model.pth.tar', 'cannot write the checkpoint')
    assert 'evaluation' not in out.stdout


def test_eval_unwritable_out_json_fails_before_evaluating(work):
    (work / 'afile').write_text('x')
    out = test_global(work, '--out_json', 'afile/r.json')
    assert_refused(out, 'afile/r.json', 'cannot write')
    assert 'Computing results' not in out.stdout


def test_predict_unwritable_export_fails_before_encoding(work):
    (work / 'afile').write_text('x')
    out = predict(work, '--export', 'afile/emb.npz')
    assert_refused(out, 'afile/emb.npz')
    assert 'split:' not in out.stdout


# ---------------------------------------------------------------- malicious pickles
def test_eval_malicious_checkpoint_runs_nothing(work):
    marker = work / 'PWNED'
    torch.save({'model': {}, 'opt': Evil(str(marker))}, str(work / 'evil.pth.tar'))
    out = test_global(work, ckpt='evil.pth.tar')
    assert_refused(out, 'evil.pth.tar', 'refused')
    assert not marker.exists()


def test_train_object_array_features_run_nothing(work):
    marker = work / 'PWNED'
    np.save(work / SPLIT / 'train_labels.npy', np.array([Evil(str(marker))] * 60, dtype=object), allow_pickle=True)
    out = train(work)
    assert_refused(out, 'train_labels.npy', 'refused')
    assert not marker.exists()


# ---------------------------------------------------------------- kill -9, then resume
def test_kill_during_checkpoint_write_keeps_the_last_one_and_resume_is_exact(work, monkeypatch):
    common = ['--data_path', GLOBAL] + TINY
    monkeypatch.chdir(work)
    train_global.main(common + ['--logger_name', 'a', '--model_name', 'a', '--num_epochs', '2'])  # uninterrupted
    train_global.main(common + ['--logger_name', 'b', '--model_name', 'b', '--num_epochs', '1'])
    before = (work / 'b' / 'model.pth.tar').read_bytes()
    cmd = [sys.executable, os.path.join(REPO, 'm2hse', 'train_global.py')] + common + \
        ['--logger_name', 'b', '--model_name', 'b', '--num_epochs', '2', '--resume', 'b/model.pth.tar']
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(ENV, **{PAUSE_ENV: 'model.pth.tar'}))
    deadline = time.time() + 120
    for line in proc.stdout:  # the epoch-2 checkpoint is being written when this line appears
        if PAUSE_MESSAGE in line:
            break
        assert time.time() < deadline
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (work / 'b' / 'model.pth.tar').read_bytes() == before  # the last complete checkpoint, intact
    leftovers = [n for n in os.listdir(work / 'b') if n.endswith('.tmp')]
    assert leftovers  # the half-written file, not under the real name
    train_global.main(common + ['--logger_name', 'b', '--model_name', 'b', '--num_epochs', '2',
                                '--resume', 'b/model.pth.tar'])
    assert not [n for n in os.listdir(work / 'b') if n.endswith('.tmp')]  # cleaned at start
    a, b = load_checkpoint(str(work / 'a' / 'model.pth.tar')), load_checkpoint(str(work / 'b' / 'model.pth.tar'))
    assert a['epoch'] == b['epoch'] == 2
    for key in a['model']:
        assert torch.equal(a['model'][key], b['model'][key]), key
    def epoch1_losses(name):
        return [line.split('loss: ')[1].split(';')[0] for line in open(work / name / 'loss.log')
                if line.startswith('epoch: 1')]
    uninterrupted, resumed = epoch1_losses('a'), epoch1_losses('b')
    assert len(resumed) == 2 * len(uninterrupted)  # epoch 1 ran in the killed run and again after resume
    assert resumed[:len(uninterrupted)] == resumed[len(uninterrupted):] == uninterrupted
