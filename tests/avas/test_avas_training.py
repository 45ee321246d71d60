"""Short training of both stages lowers the loss; checkpoints are named and laid out like the
releases (the recall script / ranking loader read them back); --resume continues the run."""
import contextlib
import glob
import io
import os
import shutil

import pytest
import torch

from avas.data import RECORD_SEP, read_ranking_lines
from tests.avas.avas_testlib import (PHOTOS, PIC_NUM, VAL_CSV, fill_deterministic, make_small_bert,
                                     set_bn_stats_from)


@pytest.fixture(scope='module')
def bert(tmp_path_factory):
    torch.set_num_threads(1)
    return make_small_bert(str(tmp_path_factory.mktemp('bert')))


def _align_set(root):
    photos = sorted(os.listdir(PHOTOS))
    image_dir = os.path.join(root, 'imgs')
    os.makedirs(image_dir, exist_ok=True)
    rows = []
    for i, (poi_id, name) in enumerate([('1', '普陀山'), ('2', '北海海底世界'), ('3', '漠河'), ('4', '朱家角')]):
        shutil.copy(os.path.join(PHOTOS, photos[i]), os.path.join(image_dir, '%s_1.jpg' % poi_id))
        rows.append('%s,%s,http://h/%d,1,0,0,0' % (poi_id, name, i))
    rows.append('5,缺图,http://h/5,1,0,0,0')  # its image is missing: skipped with a warning
    csv = os.path.join(root, 'train.csv')
    open(csv, 'w', encoding='utf-8').write('\n'.join(rows) + '\n')
    return csv, image_dir


@pytest.fixture(scope='module')
def align_run(bert, tmp_path_factory):
    """3 epochs of train_align.py on 4 photos (a 5th CSV row lacks its image); printed output kept."""
    from avas.train_align import main
    root = tmp_path_factory.mktemp('align')
    csv, image_dir = _align_set(str(root))
    argv = ['--train_csv', csv, '--image_dir', image_dir, '--bert_path', bert, '--batch_size', '4',
            '--image_size', '64', '--lr', '2e-3', '--save_dir', str(root / 'run'), '--seed', '0', '--device', 'cpu']
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out = main(argv + ['--epochs', '3'])
    return {'out': out, 'argv': argv, 'run': root / 'run', 'printed': printed.getvalue()}


def test_train_align_lowers_loss(align_run):
    losses = [h['loss'] for h in align_run['out']['history']]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_train_align_reports_missing_images(align_run):
    assert 'training images missing' in align_run['printed']


def test_train_align_saves_avas_layout_with_vocab_fingerprint(align_run):
    from avas.align_model import MKG_KEYS
    from common.checkpoint import load_checkpoint
    best = align_run['out']['best']
    assert os.path.basename(best).startswith('commodity_poi_mml_with_MKG_iteration_')
    ckpt = load_checkpoint(best)
    assert set(ckpt) == {'epoch', 'min_loss', 'state_dict', 'vocab_fingerprint'}  # AVAS's keys + the vocab's
    assert all(k in ckpt['state_dict'] for k in MKG_KEYS)


def test_train_align_writes_tensorboard_events(align_run):
    assert os.path.isdir(str(align_run['run'] / 'tb')) and glob.glob(str(align_run['run'] / 'tb' / 'events*'))


def test_train_align_model_pth_loads_in_the_recall_model(align_run, bert):
    from avas.align_model import build_model
    build_model(str(align_run['run'] / 'align_model.pth'), bert)  # the recall script's loader reads it


def test_train_align_resume_continues_from_checkpoint_last(align_run):
    from avas.train_align import main
    resumed = main(align_run['argv'] + ['--epochs', '4', '--resume', str(align_run['run'] / 'checkpoint_last.pth')])
    assert resumed['steps'] == 4 and [h['epoch'] for h in resumed['history']] == [3]


def _ranking_set(root):
    photos = sorted(os.listdir(PHOTOS))
    image_root = os.path.join(root, 'oss')
    os.makedirs(image_root, exist_ok=True)
    lines = []
    for k, (_, line) in enumerate(read_ranking_lines(VAL_CSV)[:6]):
        f = line.split(RECORD_SEP)
        f[7], f[8] = 'https://o/x/' + photos[2 * k], 'https://o/x/' + photos[2 * k + 1]
        shutil.copy(os.path.join(PHOTOS, photos[2 * k]), image_root)
        shutil.copy(os.path.join(PHOTOS, photos[2 * k + 1]), image_root)
        lines.append(RECORD_SEP.join(f))
    train, val = os.path.join(root, 'train.csv'), os.path.join(root, 'val.csv')
    open(train, 'w', encoding='utf-8').write('\n'.join(lines[:4]))
    open(val, 'w', encoding='utf-8').write('\n'.join(lines[4:]))
    return train, val, image_root, lines


@pytest.fixture(scope='module')
def ranking_env(bert, tmp_path_factory):
    from avas.align_model import ALIGN
    from avas.data import load_image_or_zeros
    from avas.poi_tables import build_poi_vector_tables
    tmp_path = tmp_path_factory.mktemp('ranking')
    train, val, image_root, lines = _ranking_set(str(tmp_path))
    align = fill_deterministic(ALIGN(bert_path=bert, with_mkg=True), seed=4)
    photos = sorted(os.listdir(PHOTOS))[:12]
    set_bn_stats_from(align.image_model, torch.stack([torch.from_numpy(load_image_or_zeros(os.path.join(PHOTOS, p)))
                                                      for p in photos]))
    torch.save({'epoch': 0, 'min_loss': 0.0, 'state_dict': align.state_dict()}, str(tmp_path / 'align_model.pth'))
    shutil.copy(PIC_NUM, str(tmp_path))
    names = sorted({n for l in lines for n in l.split(RECORD_SEP)[9].split(',')})
    build_poi_vector_tables(align, {n: [os.path.join(PHOTOS, photos[0])] for n in names}, str(tmp_path),
                            torch.device('cpu'))
    common = ['--image_root', image_root, '--poi_tables', str(tmp_path), '--align_ckpt', str(tmp_path / 'align_model.pth'),
              '--bert_path', bert, '--device', 'cpu']
    return tmp_path, train, val, common


@pytest.fixture(scope='module')
def rank_run(ranking_env):
    """4 epochs of train_ranking.py validated on its own training pairs."""
    from avas.train_ranking import main
    tmp_path, train, val, common = ranking_env
    # validate on the training pairs: the eval-mode (dropout-free) loss on them must go down
    fit = ['--index_files', '%s,%s,unused' % (train, train), '--batch_size', '4'] + common
    out = main(fit + ['--epoch', '4', '--lr', '1e-3', '--save_dir', str(tmp_path / 'rank'), '--seed', '0', '--aug', '0'])
    return {'out': out, 'fit': fit, 'save_dir': tmp_path / 'rank'}


def test_train_ranking_lowers_loss(rank_run):
    losses = [h['dev_loss'] for h in rank_run['out']['history']]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_train_ranking_saves_release_named_bare_state_dict(rank_run):
    out = rank_run['out']
    name = os.path.basename(out['best_path'])
    epoch = [h['epoch'] for h in out['history'] if h['dev_accuracy'] == out['best_acc']][0]
    assert name == 'shoucai_siamese_train_concat_poi_%03d_%.4f.ckpt' % (epoch, out['best_acc'])
    state = torch.load(out['best_path'], weights_only=True)
    assert len(state) == 669 and next(iter(state)) == 'linear1.weight'  # bare state_dict


def test_train_ranking_best_ckpt_evaluates_to_its_accuracy(rank_run):
    from avas.local_eval_test import main as eval_main
    metrics = eval_main(rank_run['fit'] + ['--ranking_ckpt', rank_run['out']['best_path']])
    assert metrics['dev_accuracy'] == pytest.approx(rank_run['out']['best_acc'])


def test_train_ranking_resume_continues_from_checkpoint_last(rank_run):
    from avas.train_ranking import main
    resumed = main(rank_run['fit'] + ['--epoch', '5', '--save_dir', str(rank_run['save_dir']), '--seed', '0', '--aug', '0',
                                      '--resume', str(rank_run['save_dir'] / 'checkpoint_last.pth')])
    assert [h['epoch'] for h in resumed['history']] == [4] and resumed['steps'] == 5


@pytest.mark.slow
def test_train_ranking_ddp_two_gloo_processes(ranking_env, tmp_path):
    """torchrun --nproc_per_node 2 on CPU (gloo): each rank trains on its half of the pairs, rank 0
    validates and saves once; the step count shows the sampler split the 4 pairs over the ranks."""
    import subprocess
    import sys
    from tests.avas.avas_testlib import REPO
    _, train, val, common = ranking_env
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29517',
           os.path.join(REPO, 'avas', 'train_ranking.py'), '--index_files', '%s,%s,unused' % (train, val),
           '--batch_size', '1', '--epoch', '1', '--aug', '0', '--image_size', '64', '--save_dir', str(tmp_path / 'ddp'),
           '--seed', '0'] + common
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count('EPOCH:') == 1  # validation on rank 0 only
    assert 'step 1' in proc.stdout
    assert glob.glob(str(tmp_path / 'ddp' / 'shoucai_siamese_train_concat_poi_000_*.ckpt'))
    last = torch.load(str(tmp_path / 'ddp' / 'checkpoint_last.pth'), weights_only=True)
    assert last['step'] == 2  # 4 pairs / 2 ranks / batch 1


@pytest.mark.slow
def test_train_align_ddp_two_gloo_processes(bert, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): every trained parameter gets a gradient on both ranks
    (the unused BERT pooler is frozen), rank 0 saves the AVAS-layout checkpoints."""
    import subprocess
    import sys
    from tests.avas.avas_testlib import REPO
    csv, image_dir = _align_set(str(tmp_path))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29519',
           os.path.join(REPO, 'avas', 'train_align.py'), '--train_csv', csv, '--image_dir', image_dir, '--bert_path', bert,
           '--batch_size', '2', '--epochs', '1', '--image_size', '64', '--save_dir', str(tmp_path / 'ddp'),
           '--seed', '0', '--device', 'cpu']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert torch.load(str(tmp_path / 'ddp' / 'checkpoint_last.pth'), weights_only=True)['step'] == 1  # 4 pairs/2/2
    assert os.path.isfile(str(tmp_path / 'ddp' / 'align_model.pth'))
