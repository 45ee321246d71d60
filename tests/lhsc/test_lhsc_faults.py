"""Bad input to the lhsc entry scripts ends in one clear error (exit 2, file named, no traceback),
runs no code from a file, and loses nothing."""
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from common.atomic import PAUSE_ENV, PAUSE_MESSAGE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, 'tests', 'lhsc', 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')
ENV = dict(os.environ, OMP_NUM_THREADS='1', XMODAL_PROGRESS='0')


def run(script, *args, cwd):
    cmd = [sys.executable, os.path.join(REPO, 'lhsc', script)] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)


def assert_clear_error(done, *needles):
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert 'Traceback' not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr[-2000:]


def evaluate(tmp_path, data_path=DATA, model=os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), *extra):
    return run('evaluation.py', '--model_path', model, '--data_path', data_path, '--vocab_path', VOCAB,
               '--device', 'cpu', *extra, cwd=tmp_path)


@pytest.fixture
def data_copy(tmp_path):
    shutil.copytree(os.path.join(DATA, 'f30k_precomp'), tmp_path / 'd' / 'f30k_precomp')
    return tmp_path / 'd'


def test_evaluation_missing_caption_file(tmp_path, data_copy):
    os.remove(data_copy / 'f30k_precomp' / 'test_caps.txt')
    assert_clear_error(evaluate(tmp_path, data_copy), 'test_caps.txt: caption file not found')


def test_evaluation_truncated_features(tmp_path, data_copy):
    path = data_copy / 'f30k_precomp' / 'test_ims.npy'
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    assert_clear_error(evaluate(tmp_path, data_copy), 'test_ims.npy', 'truncated')


def test_evaluation_wrong_feature_shape(tmp_path, data_copy):
    path = data_copy / 'f30k_precomp' / 'test_ims.npy'
    np.save(path, np.load(path)[:, :35])
    assert_clear_error(evaluate(tmp_path, data_copy), 'test_ims.npy', 'exactly 36 regions')


def test_evaluation_empty_split(tmp_path, data_copy):
    np.save(data_copy / 'f30k_precomp' / 'test_ims.npy', np.zeros((0, 36, 20), np.float32))
    (data_copy / 'f30k_precomp' / 'test_caps.txt').write_text('')
    assert_clear_error(evaluate(tmp_path, data_copy), 'the test split is empty')


def test_evaluation_nan_features(tmp_path, data_copy):
    path = data_copy / 'f30k_precomp' / 'test_ims.npy'
    ims = np.load(path)
    ims[3] = np.nan
    np.save(path, ims)
    assert_clear_error(evaluate(tmp_path, data_copy), 'non-finite similarities')


def test_evaluation_vocabulary_of_another_size(tmp_path):
    done = run('evaluation.py', '--model_path', os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), '--data_path', DATA,
               '--vocab_path', os.path.join(REPO, 'lhsc', 'vocab'), '--device', 'cpu', cwd=tmp_path)
    assert_clear_error(done, 'embeds 35 words but the vocabulary')


def test_evaluation_garbage_and_foreign_checkpoints(tmp_path):
    (tmp_path / 'junk.pth.tar').write_bytes(b'not a checkpoint at all' * 10)
    assert_clear_error(evaluate(tmp_path, DATA, str(tmp_path / 'junk.pth.tar')), 'junk.pth.tar')
    import torch
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'epoch': 3}, tmp_path / 'other.pth')
    assert_clear_error(evaluate(tmp_path, DATA, str(tmp_path / 'other.pth')), 'other.pth',
                       'not an LHSC/SGRAF checkpoint')


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


def test_malicious_pickle_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / 'pwned'
    with open(tmp_path / 'evil.pth.tar', 'wb') as f:
        pickle.dump({'opt': _Payload(marker), 'model': []}, f)
    assert_clear_error(evaluate(tmp_path, DATA, str(tmp_path / 'evil.pth.tar')), 'evil.pth.tar')
    assert not marker.exists()


def test_unwritable_out_json_fails_before_evaluating(tmp_path):
    (tmp_path / 'afile').write_text('x')
    done = evaluate(tmp_path, DATA, os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'),
                    '--out_json', str(tmp_path / 'afile' / 'r.json'))
    assert_clear_error(done, 'afile/r.json')
    assert 'Computing results' not in done.stdout


def test_train_unwritable_model_name_fails_before_training(tmp_path):
    (tmp_path / 'afile').write_text('x')
    done = run('train.py', '--data_path', DATA, '--vocab_path', VOCAB, '--model_name', tmp_path / 'afile' / 'ck',
               '--logger_name', tmp_path / 'log', '--img_dim', '20', '--device', 'cpu', cwd=tmp_path)
    assert_clear_error(done, 'afile/ck', '--model_name')
    assert 'Epoch' not in done.stdout


def test_train_missing_data(tmp_path):
    done = run('train.py', '--data_path', tmp_path / 'nowhere', '--vocab_path', VOCAB, '--model_name',
               tmp_path / 'ck', '--logger_name', tmp_path / 'log', '--device', 'cpu', cwd=tmp_path)
    assert_clear_error(done, 'train_caps.txt: caption file not found')


def test_train_nan_loss_stops_and_saves_nothing(tmp_path, data_copy):
    path = data_copy / 'f30k_precomp' / 'train_ims.npy'
    ims = np.load(path)
    ims[:] = np.inf
    np.save(path, ims)
    done = run('train.py', '--data_path', data_copy, '--vocab_path', VOCAB, '--model_name', tmp_path / 'ck',
               '--logger_name', tmp_path / 'log', '--img_dim', '20', '--word_dim', '12', '--embed_size', '16',
               '--sim_dim', '8', '--batch_size', '30', '--num_epochs', '1', '--device', 'cpu', cwd=tmp_path)
    assert_clear_error(done, 'non-finite loss', 'epoch 0 step 0')
    assert not os.listdir(tmp_path / 'ck')


def test_predict_unwritable_export_and_bad_index(tmp_path):
    (tmp_path / 'afile').write_text('x')
    done = run('predict.py', '--checkpoint', os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), '--data_path', DATA,
               '--vocab_path', VOCAB, '--export', tmp_path / 'afile' / 'e.npz', cwd=tmp_path)
    assert_clear_error(done, 'afile/e.npz')
    done = run('predict.py', '--checkpoint', os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), '--data_path', DATA,
               '--vocab_path', VOCAB, '--image_index', '999', '--device', 'cpu', cwd=tmp_path)
    assert_clear_error(done, '--image_index 999')


def test_kill_during_checkpoint_write_keeps_files_and_resumes_exactly(tmp_path):
    import glob
    import signal
    import time

    import torch

    from common.checkpoint import load_checkpoint
    from lhsc import make_demo_data
    make_demo_data.main(['--out_dir', str(tmp_path / 'data'), '--img_dim', '8', '--n_train', '30', '--n_dev', '10',
                         '--n_test', '10', '--seed', '1', '--photos', ''])

    def argv(name, *extra):
        return [sys.executable, os.path.join(REPO, 'lhsc', 'train.py'), '--data_path', 'data', '--vocab_path',
                os.path.join(REPO, 'lhsc', 'vocab'), '--model_name', name, '--logger_name', name + '_log',
                '--img_dim', '8', '--word_dim', '8', '--embed_size', '8', '--sim_dim', '8', '--batch_size', '30',
                '--num_epochs', '2', '--lr_update', '100', '--learning_rate', '2e-3', '--max_violation',
                '--device', 'cpu', '--seed', '0'] + list(extra)

    straight = subprocess.run(argv('straight'), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=180)
    assert straight.returncode == 0, straight.stderr[-2000:]
    env = dict(ENV, **{PAUSE_ENV: 'checkpoint_1.pth.tar'})
    proc = subprocess.Popen(argv('killed'), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 150
    for line in proc.stderr:  # wait until the write window is open
        if PAUSE_MESSAGE in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folder = tmp_path / 'killed'
    assert not (folder / 'checkpoint_1.pth.tar').exists()
    assert glob.glob(str(folder / '.checkpoint_1.pth.tar.*.tmp'))          # the interrupted temp file
    assert load_checkpoint(str(folder / 'checkpoint_0.pth.tar'))['epoch'] == 1  # the last good one is intact
    resumed = subprocess.run(argv('killed', '--resume', 'auto'), cwd=tmp_path, env=ENV, capture_output=True,
                             text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not glob.glob(str(folder / '.*.tmp'))
    a = load_checkpoint(str(tmp_path / 'straight' / 'checkpoint_1.pth.tar'))
    b = load_checkpoint(str(folder / 'checkpoint_1.pth.tar'))
    assert a['best_rsum'] == b['best_rsum'] and a['Eiters'] == b['Eiters']
    for sa, sb in zip(a['model'], b['model']):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
