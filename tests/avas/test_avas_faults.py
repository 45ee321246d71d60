"""Bad input to the real avas entry scripts (subprocesses, tiny real data): each fault class ends in
one `error:` line naming the file, exit code 2, no traceback, and nothing ran or was lost."""
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

from avas.align_model import ALIGN
from avas.formats import RECORD_SEP, read_ranking_lines
from avas.poi_tables import IMG_VEC_TABLE, NAME_VEC_TABLE, build_poi_vector_tables
from common.atomic import PAUSE_ENV, PAUSE_MESSAGE
from tests.avas.avas_testlib import PHOTOS, PIC_NUM, REPO, VAL_CSV, fill_deterministic, make_small_bert

POIS = [('10060', '北海海底世界'), ('10061', '普陀山')]


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """A small-BERT ALIGN checkpoint (upstream layout), 4 recall photos, 3 ranking pairs and tables."""
    torch.set_num_threads(1)
    root = str(tmp_path_factory.mktemp('faults'))
    bert = make_small_bert(os.path.join(root, 'bert'))
    photos = sorted(os.listdir(PHOTOS))
    images = os.path.join(root, 'images')
    os.makedirs(images)
    rows = []
    for i, (poi_id, name) in enumerate(POIS):
        for rank in (1, 2):
            shutil.copy(os.path.join(PHOTOS, photos[2 * i + rank]), os.path.join(images, '%s_%d.jpg' % (poi_id, rank)))
            rows.append('%s,%s,http://h/%d.jpg,%d,1,1,1' % (poi_id, name, i, rank))
    with open(os.path.join(root, 'recall.csv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows) + '\n')
    align = fill_deterministic(ALIGN(bert_path=bert, with_mkg=True), seed=1).eval()
    torch.save({'epoch': 0, 'min_loss': 1.0, 'state_dict': align.state_dict()}, os.path.join(root, 'align_model.pth'))
    oss = os.path.join(root, 'oss')
    os.makedirs(oss)
    lines = []
    for k, (_, line) in enumerate(read_ranking_lines(VAL_CSV)[:3]):
        f = line.split(RECORD_SEP)
        f[7], f[8] = 'https://o/x/' + photos[10 + 2 * k], 'https://o/x/' + photos[11 + 2 * k]
        shutil.copy(os.path.join(PHOTOS, photos[10 + 2 * k]), oss)
        shutil.copy(os.path.join(PHOTOS, photos[11 + 2 * k]), oss)
        lines.append(RECORD_SEP.join(f))
    with open(os.path.join(root, 'val.csv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    tables = os.path.join(root, 'tables')
    os.makedirs(tables)
    shutil.copy(PIC_NUM, tables)
    names = sorted({n for l in lines for n in l.split(RECORD_SEP)[9].split(',')})
    build_poi_vector_tables(align, {n: [os.path.join(PHOTOS, photos[0])] for n in names}, tables, torch.device('cpu'))
    return {'root': root, 'bert': bert, 'images': images, 'recall_csv': os.path.join(root, 'recall.csv'),
            'ckpt': os.path.join(root, 'align_model.pth'), 'oss': oss, 'val': os.path.join(root, 'val.csv'),
            'tables': tables}


def run(script, *args, env_extra=None, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', XMODAL_PROGRESS='0', **(env_extra or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, 'avas', script)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd or REPO)


def assert_input_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert 'Traceback' not in proc.stderr and 'Traceback' not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: '), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def recall_args(env, **overrides):
    args = {'--model_path': env['ckpt'], '--bert_path': env['bert'], '--image_dir': env['images'],
            '--in_csv': env['recall_csv'], '--out_csv': os.path.join(env['root'], 'out', 'res.csv'), '--device': 'cpu'}
    args.update(overrides)
    return [x for kv in args.items() for x in kv]


def eval_args(env, **overrides):
    args = {'--index_files': 'unused,%s,unused' % env['val'], '--image_root': env['oss'], '--poi_tables': env['tables'],
            '--align_ckpt': env['ckpt'], '--bert_path': env['bert'], '--ranking_ckpt': '', '--batch_size': '2',
            '--device': 'cpu'}
    args.update(overrides)
    return [x for kv in args.items() for x in kv]


class Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


# ------------------------------------------------------------------ missing files
def test_recall_missing_checkpoint_names_it(env):
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--model_path': '/nope/align_model.pth'}))
    assert_input_error(proc, '/nope/align_model.pth', 'release v0.1')


def test_ranking_eval_missing_image_root_is_an_error(env):
    proc = run('local_eval_test.py', *eval_args(env, **{'--image_root': '/nope/oss_images'}))
    assert_input_error(proc, '/nope/oss_images', 'download_images.py')


def test_ranking_eval_missing_poi_table_names_it(env, tmp_path):
    shutil.copy(PIC_NUM, tmp_path)
    proc = run('local_eval_test.py', *eval_args(env, **{'--poi_tables': tmp_path}))
    assert_input_error(proc, IMG_VEC_TABLE)


def test_recall_at_k_missing_file(env):
    assert_input_error(run('align_recall@K.py', '--file', '/nope/res.csv'), '/nope/res.csv', 'not found')


# ------------------------------------------------------------------ truncated / garbled files
def test_recall_truncated_checkpoint(env, tmp_path):
    data = open(env['ckpt'], 'rb').read()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--model_path': tmp_path / 'cut.pth'}))
    assert_input_error(proc, 'cut.pth', 'truncated')


def test_recall_csv_not_utf8_names_file_and_line(env, tmp_path):
    bad = tmp_path / 'gbk.csv'
    bad.write_bytes('10060,普陀山,u,1,1,1,1\n'.encode('utf-8') + '10061,南海观音,u,1,1,1,1\n'.encode('gbk'))
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--in_csv': bad}))
    assert_input_error(proc, 'gbk.csv:2', 'UTF-8')


def test_ranking_csv_not_utf8_names_file_and_line(env, tmp_path):
    bad = tmp_path / 'val_gbk.csv'
    bad.write_bytes(open(env['val'], encoding='utf-8').read().encode('gbk', errors='replace'))
    proc = run('local_eval_test.py', *eval_args(env, **{'--index_files': 'unused,%s,unused' % bad}))
    assert_input_error(proc, 'val_gbk.csv:1', 'UTF-8')


def test_recall_csv_garbled_line_names_file_and_line(env, tmp_path):
    bad = tmp_path / 'garbled.csv'
    bad.write_text('10060,普陀山,u,1,1,1,1\n10061,a,b\n', encoding='utf-8')
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--in_csv': bad}))
    assert_input_error(proc, 'garbled.csv:2', 'expected 7')


def test_train_align_corrupt_jpeg_skipped_and_counted_or_strict_error(env, tmp_path):
    images = tmp_path / 'imgs'
    shutil.copytree(env['images'], images)
    (images / '10061_2.jpg').write_bytes(open(images / '10061_1.jpg', 'rb').read()[:2000])  # truncated JPEG
    args = ['--train_csv', env['recall_csv'], '--image_dir', images, '--bert_path', env['bert'], '--batch_size', '3',
            '--epochs', '1', '--image_size', '64', '--seed', '0', '--device', 'cpu']
    strict = run('train_align.py', *args, '--save_dir', tmp_path / 'strict', '--strict')
    assert_input_error(strict, '10061_2.jpg', '--strict')
    assert not os.path.exists(tmp_path / 'strict' / 'checkpoint_last.pth')
    proc = run('train_align.py', *args, '--save_dir', tmp_path / 'run')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'unreadable image' in proc.stdout and '10061_2.jpg' in proc.stdout
    assert 'skipped 1 of 4 training images' in proc.stdout


def test_recall_corrupt_jpeg_strict_is_an_error(env, tmp_path):
    images = tmp_path / 'imgs'
    shutil.copytree(env['images'], images)
    (images / '10060_9.jpg').write_bytes(b'\xff\xd8\xff not really a jpeg')
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--image_dir': images}), '--strict')
    assert_input_error(proc, '10060_9.jpg', '--strict')
    assert not os.path.exists(os.path.join(env['root'], 'out', 'res.csv'))


# ------------------------------------------------------------------ wrong shape
def test_ranking_eval_poi_vectors_of_wrong_size(env, tmp_path):
    shutil.copy(PIC_NUM, tmp_path)
    for name in (IMG_VEC_TABLE, NAME_VEC_TABLE):
        np.savez(str(tmp_path / name.replace('.npy', '.npz')), names=np.array(['普陀山']),
                 values=np.zeros((1, 256), np.float32))
    proc = run('local_eval_test.py', *eval_args(env, **{'--poi_tables': tmp_path}))
    assert_input_error(proc, IMG_VEC_TABLE.replace('.npy', '.npz'), '(256,)', 'expected (512,)')


# ------------------------------------------------------------------ vocabulary mismatch
def test_recall_with_another_vocabulary_than_training(env, tmp_path):
    from avas.tokenization import build_tokenizer, vocab_fingerprint
    obj = torch.load(env['ckpt'], weights_only=True)
    obj['vocab_fingerprint'] = vocab_fingerprint(build_tokenizer(env['bert']))
    torch.save(obj, str(tmp_path / 'trained.pth'))
    other = make_small_bert(str(tmp_path / 'other_bert'))
    vocab = open(os.path.join(other, 'vocab.txt'), encoding='utf-8').read().split('\n')
    vocab[1000], vocab[1001] = vocab[1001], vocab[1000]  # same size, another token order
    open(os.path.join(other, 'vocab.txt'), 'w', encoding='utf-8').write('\n'.join(vocab))
    same = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--model_path': tmp_path / 'trained.pth'}))
    assert same.returncode == 0, same.stderr[-2000:]
    proc = run('align_recall_test_with_mmkg_model.py',
               *recall_args(env, **{'--model_path': tmp_path / 'trained.pth', '--bert_path': other}))
    assert_input_error(proc, 'trained.pth', 'another vocabulary')


# ------------------------------------------------------------------ bad checkpoints
def test_recall_refuses_another_papers_checkpoint(env, tmp_path):
    import argparse
    torch.save({'model': {'img_enc.fc.weight': torch.zeros(2, 2)}, 'opt': argparse.Namespace(lr=1)},
               str(tmp_path / 'model_best.pth.tar'))
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--model_path': tmp_path / 'model_best.pth.tar'}))
    assert_input_error(proc, 'model_best.pth.tar', 'ALIGN checkpoint')


def test_ranking_eval_refuses_align_checkpoint_as_ranking_ckpt(env):
    proc = run('local_eval_test.py', *eval_args(env, **{'--ranking_ckpt': env['ckpt']}))
    assert_input_error(proc, 'align_model.pth', 'Multimodal_Model')


# ------------------------------------------------------------------ empty inputs
def test_ranking_eval_empty_csv(env, tmp_path):
    (tmp_path / 'empty.csv').write_text('\n', encoding='utf-8')
    proc = run('local_eval_test.py', *eval_args(env, **{'--index_files': 'unused,%s,unused' % (tmp_path / 'empty.csv')}))
    assert_input_error(proc, 'empty.csv', 'no pairs')


def test_ranking_eval_all_pairs_dropped_is_an_error_not_nan(env, tmp_path):
    proc = run('local_eval_test.py', *eval_args(env, **{'--image_root': tmp_path}), '--out_json', tmp_path / 'r.json')
    assert_input_error(proc, 'val.csv', 'all 3 pairs were dropped')
    assert not os.path.exists(tmp_path / 'r.json')


def test_recall_empty_csv(env, tmp_path):
    (tmp_path / 'empty.csv').write_text('', encoding='utf-8')
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--in_csv': tmp_path / 'empty.csv'}))
    assert_input_error(proc, 'empty.csv', 'no rows')


def test_train_ranking_without_usable_pairs_is_an_error(env, tmp_path):
    proc = run('train_ranking.py', *eval_args(env, **{'--index_files': '%s,%s,unused' % (env['val'], env['val']),
                                                     '--image_root': tmp_path}), '--save_dir', tmp_path / 'rank')
    assert_input_error(proc, 'val.csv', 'no usable train pair')


# ------------------------------------------------------------------ non-finite values
def test_train_align_non_finite_loss_stops_and_saves_nothing_non_finite(env, tmp_path):
    proc = run('train_align.py', '--train_csv', env['recall_csv'], '--image_dir', env['images'], '--bert_path', env['bert'],
               '--batch_size', '4', '--epochs', '3', '--image_size', '64', '--lr', '1e30', '--seed', '0',
               '--device', 'cpu', '--save_dir', tmp_path / 'run')
    assert_input_error(proc, 'non-finite loss', 'epoch 1 step 2')
    from common.checkpoint import load_checkpoint
    from common.safeio import all_finite
    for name in os.listdir(tmp_path / 'run'):
        if name.endswith('.pth'):
            assert all_finite(load_checkpoint(str(tmp_path / 'run' / name))['state_dict']), name


def test_recall_at_k_nan_score_names_line(env, tmp_path):
    (tmp_path / 'res.csv').write_text('1,a,d/1_1.jpg,0.5\n1,a,d/2_1.jpg,nan\n', encoding='utf-8')
    assert_input_error(run('align_recall@K.py', '--file', tmp_path / 'res.csv'), 'res.csv:2', 'not finite')


# ------------------------------------------------------------------ unwritable outputs
def test_recall_unwritable_out_json_fails_before_work(env):
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--out_csv': '/proc/avas/res.csv'}))
    assert_input_error(proc, '/proc/avas/res.csv', 'cannot write')
    assert 'iterations=' not in proc.stdout  # nothing was embedded


def test_train_align_unwritable_save_dir(env):
    proc = run('train_align.py', '--train_csv', env['recall_csv'], '--image_dir', env['images'],
               '--bert_path', env['bert'], '--save_dir', '/proc/avas_run', '--device', 'cpu')
    assert_input_error(proc, '/proc/avas_run')


# ------------------------------------------------------------------ malicious pickles
def test_malicious_poi_table_npy_runs_nothing(env, tmp_path):
    marker = tmp_path / 'pwned'
    shutil.copy(PIC_NUM, tmp_path)
    for name in (IMG_VEC_TABLE, NAME_VEC_TABLE):
        np.save(str(tmp_path / name), np.array(Evil(marker), dtype=object), allow_pickle=True)
    proc = run('local_eval_test.py', *eval_args(env, **{'--poi_tables': tmp_path}))
    assert_input_error(proc, IMG_VEC_TABLE, 'posix.system')
    assert not marker.exists()
    convert = run('poi_tables.py', '--convert', tmp_path)
    assert_input_error(convert, 'allow-list')
    assert not marker.exists()


def test_malicious_checkpoint_runs_nothing(env, tmp_path):
    marker = tmp_path / 'pwned'
    with open(tmp_path / 'align_model.pth', 'wb') as f:
        pickle.dump({'state_dict': Evil(marker)}, f)
    proc = run('align_recall_test_with_mmkg_model.py', *recall_args(env, **{'--model_path': tmp_path / 'align_model.pth'}))
    assert_input_error(proc, 'align_model.pth', 'not on the allow-list')
    assert not marker.exists()


# ------------------------------------------------------------------ kill -9, then resume
def _kill_in_write(cmd, env_extra, target, cwd):
    """Start cmd with the pause hook on `target`'s name, kill -9 it inside the atomic write."""
    env = dict(os.environ, OMP_NUM_THREADS='1', XMODAL_PROGRESS='0', **env_extra)
    env[PAUSE_ENV] = os.path.basename(target)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    deadline = time.time() + 240
    for line in proc.stderr:
        if PAUSE_MESSAGE in line:
            break
        assert time.time() < deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_align_model_copy_killed_mid_write_keeps_the_old_file(tmp_path):
    old, new = tmp_path / 'align_model.pth', tmp_path / 'best.pth'
    old.write_bytes(b'old complete model' * 1000)
    new.write_bytes(b'new complete model' * 1000)
    code = 'from common.checkpoint import copy_to_best; copy_to_best(%r, %r)' % (str(new), str(old))
    _kill_in_write([sys.executable, '-c', code], {}, str(old), REPO)
    assert old.read_bytes() == b'old complete model' * 1000  # the old file, whole
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]
    assert leftovers  # the interrupted temp file, removed by cleanup_stale_tmp at the next start
    from common.safeio import cleanup_stale_tmp
    cleanup_stale_tmp(str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def test_train_align_kill9_in_checkpoint_write_then_exact_resume(env, tmp_path):
    from avas.train_align import main
    from common.checkpoint import load_checkpoint
    base = ['--train_csv', env['recall_csv'], '--image_dir', env['images'], '--bert_path', env['bert'],
            '--batch_size', '4', '--image_size', '64', '--lr', '2e-3', '--seed', '0', '--device', 'cpu', '--no_progress']
    straight = main(base + ['--epochs', '3', '--save_dir', str(tmp_path / 'straight')])
    run_dir = str(tmp_path / 'killed')
    main(base + ['--epochs', '1', '--save_dir', run_dir])
    first = open(os.path.join(run_dir, 'checkpoint_last.pth'), 'rb').read()
    cmd = [sys.executable, os.path.join(REPO, 'avas', 'train_align.py')] + base + [
        '--epochs', '3', '--save_dir', run_dir, '--resume', os.path.join(run_dir, 'checkpoint_last.pth')]
    _kill_in_write(cmd, {}, os.path.join(run_dir, 'checkpoint_last.pth'), REPO)
    assert open(os.path.join(run_dir, 'checkpoint_last.pth'), 'rb').read() == first  # intact: epoch 0's
    assert load_checkpoint(os.path.join(run_dir, 'checkpoint_last.pth'))['epoch'] == 0
    resumed = main(base + ['--epochs', '3', '--save_dir', run_dir, '--resume', os.path.join(run_dir, 'checkpoint_last.pth')])
    assert not [n for n in os.listdir(run_dir) if n.endswith('.tmp')]  # leftovers cleaned at start
    assert [h['epoch'] for h in resumed['history']] == [1, 2]
    assert [h['loss'] for h in resumed['history']] == pytest.approx([h['loss'] for h in straight['history'][1:]],
                                                                    rel=1e-6)
