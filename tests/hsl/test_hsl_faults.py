"""Bad input to the real HSL entry scripts (subprocesses on the tiny data): one clear `error:` line
naming the file, exit code 2, no traceback, nothing run from a data file, nothing lost."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from common.atomic import PAUSE_ENV, PAUSE_MESSAGE
from common.checkpoint import load_checkpoint
from hsl import parse_dataset
from hsl.data import load_vocab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPSTREAM_CKPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'upstream_ckpt_glove.pth.tar')


def script_env(**extra):
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', XMODAL_PROGRESS='0', **extra)


def run_script(script, args, cwd, timeout=180, **env):
    return subprocess.run([sys.executable, os.path.join(REPO, 'hsl', script)] + [str(a) for a in args],
                          cwd=str(cwd), env=script_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def assert_input_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1500:], proc.stderr[-3000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert error, proc.stderr[-3000:]
    for needle in needles:
        assert str(needle) in proc.stderr, (needle, proc.stderr[-3000:])


@pytest.fixture
def data(tiny_root, tmp_path):
    """A private copy of the parsed tiny data (tests may damage it)."""
    copy = tmp_path / 'data'
    shutil.copytree(os.path.join(tiny_root, 'data'), copy)
    return copy


def eval_args(data, *extra):
    """The README's bare testing command, pointed at the tiny data."""
    return ['--eval_only', '--resume', UPSTREAM_CKPT, '--data_path', data,
            '--vocab_path', data / 'KDDCup2020', '--answer_path', data / 'kddcup' / 'valid' / 'valid_answer.json',
            '--glove_path', data / 'absent.bin', '--num_workers', '0', '--device', 'cpu'] + list(extra)


def train_args(data, logger, *extra):
    return ['--logger_name', logger, '--data_path', data, '--vocab_path', data / 'KDDCup2020',
            '--answer_path', data / 'kddcup' / 'valid' / 'valid_answer.json', '--num_workers', '0',
            '--device', 'cpu', '--seed', '1', '--batch_size', '4', '--log_step', '1', '--img_dim', '16',
            '--d_model', '8', '--word_dim', '8', '--embed_size', '12', '--HIDDEN_SIZE', '8',
            '--FLAT_MLP_SIZE', '8', '--FLAT_OUT_SIZE', '12', '--use_dup'] + list(extra)


def predict_args(data, *extra):
    return ['--checkpoint', UPSTREAM_CKPT, '--query', 'red dress', '--data_path', data,
            '--vocab_path', data / 'KDDCup2020', '--device', 'cpu'] + list(extra)


def truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * keep))


class RunsCode(object):
    """A pickle that would create `marker` when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


# --- missing files -------------------------------------------------------------------------------

def test_eval_missing_answer_file_is_named(data, tmp_path):
    os.remove(data / 'kddcup' / 'valid' / 'valid_answer.json')
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid_answer.json: answer file not found', '--answer_path')
    assert 'nDCG score' not in proc.stdout


def test_eval_missing_checkpoint_is_named(data, tmp_path):
    proc = run_script('main.py', eval_args(data, '--resume', tmp_path / 'nope.pth.tar'), tmp_path)
    assert_input_error(proc, 'nope.pth.tar: checkpoint file not found')
    assert "=> no checkpoint found at" in proc.stdout  # upstream's line is kept


def test_predict_missing_features_are_named(data, tmp_path):
    os.remove(data / 'KDDCup2020' / 'valid' / 'valid.features.npy')
    proc = run_script('predict.py', predict_args(data), tmp_path)
    assert_input_error(proc, 'valid.features.npy', 'not found')


def test_parse_missing_tsv_is_named(tmp_path):
    proc = run_script('parse_dataset.py', ['--data_path', tmp_path / 'data', '--no_progress'], tmp_path)
    assert_input_error(proc, 'train.tsv not found')


# --- truncated or garbled files ------------------------------------------------------------------

def test_eval_truncated_features_npy_is_named(data, tmp_path):
    truncate(data / 'KDDCup2020' / 'valid' / 'valid.features.npy')
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid.features.npy: truncated')


def test_eval_truncated_checkpoint_is_named(data, tmp_path):
    ckpt = tmp_path / 'cut.pth.tar'
    shutil.copy(UPSTREAM_CKPT, ckpt)
    truncate(ckpt)
    proc = run_script('main.py', eval_args(data, '--resume', ckpt), tmp_path)
    assert_input_error(proc, 'cut.pth.tar: the file is truncated or corrupt')


def test_eval_truncated_products_pickle_is_named(data, tmp_path):
    truncate(data / 'KDDCup2020' / 'valid' / 'valid.products.pkl')
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid.products.pkl: the file is truncated or corrupt')


def test_eval_garbled_answer_json_names_line(data, tmp_path):
    (data / 'kddcup' / 'valid' / 'valid_answer.json').write_text('{"101": [11],\n "102": [')
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid_answer.json:2: not valid JSON')


def test_train_truncated_glove_is_named(data, tmp_path):
    from gensim.models import KeyedVectors
    glove = tmp_path / 'glove_model.bin'
    kv = KeyedVectors(vector_size=300)
    kv.add_vectors(['red', 'bag', 'dress'], np.ones((3, 300), np.float32))
    kv.save_word2vec_format(str(glove), binary=True)
    truncate(glove, 0.6)
    proc = run_script('main.py', train_args(data, tmp_path / 'run', '--glove', '--glove_path', glove), tmp_path)
    assert_input_error(proc, 'glove_model.bin: truncated or not a word2vec binary file')
    assert 'epoch\n0' not in proc.stdout


def test_parse_truncated_tsv_names_the_line(hh, tmp_path):
    tsv = tmp_path / 'data' / 'KDDCup2020' / 'train' / 'train.tsv'
    rows = [hh.tsv_row(i, np.ones((2, 4), np.float32), 'red dress', i) for i in range(1, 4)]
    hh.write_tsv(str(tsv), rows)
    truncate(tsv, 0.8)  # the last row is cut in its middle
    proc = run_script('parse_dataset.py', ['--data_path', tmp_path / 'data', '--feature_dim', '4',
                                           '--splits', 'train', '--no_progress'], tmp_path)
    assert_input_error(proc, '%s:4' % tsv, '--skip_bad_rows')
    assert not os.path.exists(tsv.parent / 'train.features.npy')


# --- wrong shape ---------------------------------------------------------------------------------

def test_train_feature_size_mismatch_names_file_and_flag(data, tmp_path):
    proc = run_script('main.py', train_args(data, tmp_path / 'run', '--img_dim', '32'), tmp_path)
    assert_input_error(proc, 'valid.features.npy: box features have 16 values', '--img_dim 32')


def test_eval_features_of_another_shape_are_named(data, tmp_path):
    path = data / 'KDDCup2020' / 'valid' / 'valid.features.npy'
    np.save(path, np.zeros((3, 4, 16), np.float32))
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid.features.npy: box features array has shape (3, 4, 16)')


# --- vocabulary / configuration mismatch ---------------------------------------------------------

def test_eval_port_checkpoint_with_another_vocabulary_is_refused(hh, data, tmp_path):
    logger = tmp_path / 'run'
    proc = run_script('main.py', train_args(data, logger, '--num_epochs', '1'), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    vocab = load_vocab(str(data / 'KDDCup2020' / 'kddcup_vocab.pkl'))
    a, b = vocab.idx2word[4], vocab.idx2word[5]  # same size, two words swapped
    vocab.idx2word[4], vocab.idx2word[5] = b, a
    vocab.word2idx[a], vocab.word2idx[b] = 5, 4
    other = tmp_path / 'other_vocab.pkl'
    parse_dataset.write_vocab(vocab, str(other))
    proc = run_script('main.py', eval_args(data, '--resume', logger / 'model_best.pth.tar',
                                           '--vocab_path', other), tmp_path)
    assert_input_error(proc, 'model_best.pth.tar: trained with another vocabulary', '--vocab_path')
    assert 'nDCG score' not in proc.stdout


def test_eval_upstream_checkpoint_with_another_vocabulary_size_is_refused(data, tmp_path):
    vocab = load_vocab(str(data / 'KDDCup2020' / 'kddcup_vocab.pkl'))
    vocab.add_word('zebra')
    other = tmp_path / 'bigger_vocab.pkl'
    parse_dataset.write_vocab(vocab, str(other))
    proc = run_script('predict.py', predict_args(data, '--vocab_path', other), tmp_path)
    assert_input_error(proc, 'its word embedding has 10 rows, the vocabulary has 11 words')


def test_eval_flag_contradicting_the_checkpoint_is_refused(data, tmp_path):
    proc = run_script('main.py', eval_args(data, '--no_txtnorm', '--embed_size', '64'), tmp_path)
    assert_input_error(proc, "--embed_size 64 (checkpoint: 12)", '--opt_from_checkpoint')
    assert 'no_txtnorm' not in proc.stderr  # given, and the same as the checkpoint's


# --- bad checkpoints -----------------------------------------------------------------------------

def test_eval_another_papers_checkpoint_is_refused(data, tmp_path):
    other = tmp_path / 'lhsc_model_best.pth.tar'
    torch.save({'model': [{'fc.weight': torch.zeros(2, 2)}, {'embed.weight': torch.zeros(3, 2)}],
                'epoch': 3, 'best_rsum': 400.0}, other)
    proc = run_script('main.py', eval_args(data, '--resume', other), tmp_path)
    assert_input_error(proc, 'lhsc_model_best.pth.tar: not an HSL checkpoint', "another paper's")


def test_predict_file_that_is_not_a_checkpoint_is_refused(data, tmp_path):
    junk = tmp_path / 'notes.pth.tar'
    junk.write_text('these are my notes, not weights\n')
    proc = run_script('predict.py', predict_args(data, '--checkpoint', junk), tmp_path)
    assert_input_error(proc, 'notes.pth.tar: not a PyTorch checkpoint')


# --- empty inputs --------------------------------------------------------------------------------

def test_parse_header_only_valid_split_is_an_error(hh, tmp_path):
    tsv = tmp_path / 'data' / 'KDDCup2020' / 'valid' / 'valid.tsv'
    hh.write_tsv(str(tsv), [])
    proc = run_script('parse_dataset.py', ['--data_path', tmp_path / 'data', '--feature_dim', '4',
                                           '--splits', 'valid', '--no_progress'], tmp_path)
    assert_input_error(proc, 'valid.tsv: no data rows')


def test_eval_empty_answer_file_is_an_error(data, tmp_path):
    (data / 'kddcup' / 'valid' / 'valid_answer.json').write_text('{}')
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid_answer.json: expected a non-empty JSON object')
    assert 'nDCG score' not in proc.stdout


# --- non-finite values ---------------------------------------------------------------------------

def test_train_nan_features_stop_with_epoch_and_step_and_save_nothing(data, tmp_path):
    path = data / 'KDDCup2020' / 'train' / 'train.features.npy'
    features = np.load(path)
    features[:] = np.nan
    np.save(path, features)
    logger = tmp_path / 'run'
    proc = run_script('main.py', train_args(data, logger, '--num_epochs', '1'), tmp_path)
    assert_input_error(proc, 'non-finite loss (nan) at epoch 1 step 1/3')
    assert not os.path.exists(logger / 'checkpoint.pth.tar')
    assert not os.path.exists(logger / 'model_best.pth.tar')


def test_parse_nan_features_name_line_and_field(hh, tmp_path):
    tsv = tmp_path / 'data' / 'KDDCup2020' / 'train' / 'train.tsv'
    bad = np.ones((2, 4), np.float32)
    bad[1, 2] = np.inf
    hh.write_tsv(str(tsv), [hh.tsv_row(1, np.ones((1, 4), np.float32), 'a', 1), hh.tsv_row(2, bad, 'b', 2)])
    proc = run_script('parse_dataset.py', ['--data_path', tmp_path / 'data', '--feature_dim', '4',
                                           '--splits', 'train', '--no_progress'], tmp_path)
    assert_input_error(proc, "%s:3: field 'features': holds NaN or inf values" % tsv)


# --- unwritable outputs (checked before any work) ------------------------------------------------

def test_eval_unwritable_out_json_fails_before_evaluating(data, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    proc = run_script('main.py', eval_args(data, '--out_json', blocker / 'res.json'), tmp_path)
    assert_input_error(proc, 'res.json: cannot write the output of --out_json')
    assert 'nDCG score' not in proc.stdout and 'loading checkpoint' not in proc.stdout


def test_train_unwritable_logger_name_fails_before_training(data, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    proc = run_script('main.py', train_args(data, blocker / 'run'), tmp_path)
    assert_input_error(proc, 'checkpoint folder (--logger_name)')
    assert 'epoch\n0' not in proc.stdout


def test_predict_unwritable_export_fails_before_ranking(data, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    proc = run_script('predict.py', predict_args(data, '--export', blocker / 'emb.npz'), tmp_path)
    assert_input_error(proc, 'emb.npz: cannot write the export archive')
    assert 'rank\tproduct_id' not in proc.stdout


# --- malicious pickles run nothing ---------------------------------------------------------------

def test_eval_malicious_products_pickle_runs_nothing(data, tmp_path):
    marker = tmp_path / 'pwned'
    with open(data / 'KDDCup2020' / 'valid' / 'valid.products.pkl', 'wb') as f:
        pickle.dump(RunsCode(marker), f)
    proc = run_script('main.py', eval_args(data), tmp_path)
    assert_input_error(proc, 'valid.products.pkl', 'not on the allow-list')
    assert not marker.exists()


def test_train_malicious_vocab_pickle_runs_nothing(data, tmp_path):
    marker = tmp_path / 'pwned'
    with open(data / 'KDDCup2020' / 'kddcup_vocab.pkl', 'wb') as f:
        pickle.dump(RunsCode(marker), f)
    proc = run_script('main.py', train_args(data, tmp_path / 'run'), tmp_path)
    assert_input_error(proc, 'kddcup_vocab.pkl', 'not on the allow-list')
    assert not marker.exists()


def test_predict_malicious_checkpoint_runs_nothing(data, tmp_path):
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'evil.pth.tar'
    torch.save({'model': RunsCode(marker), 'epoch': 1}, ckpt)
    proc = run_script('predict.py', predict_args(data, '--checkpoint', ckpt), tmp_path)
    assert_input_error(proc, 'evil.pth.tar', 'not on the allow-list')
    assert not marker.exists()


# --- kill -9 inside the checkpoint write, then resume --------------------------------------------

def _state(path):
    return load_checkpoint(str(path))


def test_kill_during_checkpoint_write_keeps_the_last_one_and_resume_is_exact(data, tmp_path):
    # uninterrupted reference: 2 epochs
    ref = run_script('main.py', train_args(data, tmp_path / 'ref', '--num_epochs', '2'), tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]

    # same run, killed while the epoch-2 checkpoint is written (after its data, before the rename)
    logger = tmp_path / 'run'
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'hsl', 'main.py')] +
                            [str(a) for a in train_args(data, logger, '--num_epochs', '2')],
                            cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=script_env(**{PAUSE_ENV: 'checkpoint.pth.tar@2'}))
    deadline = time.time() + 120
    for line in proc.stderr:
        if PAUSE_MESSAGE in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [n for n in os.listdir(logger) if n.startswith('.checkpoint.pth.tar.') and n.endswith('.tmp')]
    assert len(leftovers) == 1  # the interrupted write
    assert _state(logger / 'checkpoint.pth.tar')['epoch'] == 1  # the last complete one, intact

    resumed = run_script('main.py', train_args(data, logger, '--num_epochs', '2', '--resume',
                                               logger / 'checkpoint.pth.tar'), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert '=> resuming training at epoch 1' in resumed.stdout
    assert not [n for n in os.listdir(logger) if n.endswith('.tmp')]  # cleaned at start
    want, got = _state(tmp_path / 'ref' / 'checkpoint.pth.tar'), _state(logger / 'checkpoint.pth.tar')
    assert got['epoch'] == want['epoch'] == 2 and got['nDCG'] == want['nDCG']
    for sd_want, sd_got in zip(want['model'], got['model']):
        for key in sd_want:
            assert torch.equal(sd_want[key], sd_got[key]), key
    last_loss = [line.split('Cnt Le ')[1].split()[0] for line in ref.stdout.splitlines() if 'Cnt Le' in line]
    resumed_loss = [line.split('Cnt Le ')[1].split()[0] for line in resumed.stdout.splitlines() if 'Cnt Le' in line]
    assert last_loss[-1] == resumed_loss[-1]  # the same loss as the uninterrupted run
