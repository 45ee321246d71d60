"""Short training of both stages lowers the loss; checkpoints are named and laid out like the
releases (the recall script / ranking loader read them back); --resume continues the run."""
import glob
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


def test_train_align_lowers_loss_saves_avas_layout_and_resumes(bert, tmp_path, capsys):
    from avas.align_model import MKG_KEYS, build_model
    from avas.train_align import main
    from common.checkpoint import load_checkpoint
    csv, image_dir = _align_set(str(tmp_path))
    argv = ['--train_csv', csv, '--image_dir', image_dir, '--bert_path', bert, '--batch_size', '4',
            '--image_size', '64', '--lr', '2e-3', '--save_dir', str(tmp_path / 'run'), '--seed', '0', '--device', 'cpu']
    out = main(argv + ['--epochs', '3'])
    losses = [h['loss'] for h in out['history']]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert 'training images missing' in capsys.readouterr().out
    assert os.path.basename(out['best']).startswith('commodity_poi_mml_with_MKG_iteration_')
    ckpt = load_checkpoint(out['best'])
    assert set(ckpt) == {'epoch', 'min_loss', 'state_dict'} and all(k in ckpt['state_dict'] for k in MKG_KEYS)
    assert os.path.isdir(str(tmp_path / 'run' / 'tb')) and glob.glob(str(tmp_path / 'run' / 'tb' / 'events*'))
    build_model(str(tmp_path / 'run' / 'align_model.pth'), bert)  # the recall script's loader reads it
    resumed = main(argv + ['--epochs', '4', '--resume', str(tmp_path / 'run' / 'checkpoint_last.pth')])
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


def test_train_ranking_lowers_loss_and_saves_release_named_ckpt(bert, tmp_path):
    from avas.align_model import ALIGN
    from avas.local_eval_test import main as eval_main
    from avas.poi_tables import build_poi_vector_tables
    from avas.train_ranking import main
    train, val, image_root, lines = _ranking_set(str(tmp_path))
    from avas.data import load_image_or_zeros
    align = fill_deterministic(ALIGN(bert_path=bert, with_mkg=True), seed=4)
    photos = sorted(os.listdir(PHOTOS))[:12]
    set_bn_stats_from(align.image_model, torch.stack([torch.from_numpy(load_image_or_zeros(os.path.join(PHOTOS, p)))
                                                      for p in photos]))
    torch.save({'epoch': 0, 'min_loss': 0.0, 'state_dict': align.state_dict()}, str(tmp_path / 'align_model.pth'))
    shutil.copy(PIC_NUM, str(tmp_path))
    names = sorted({n for l in lines for n in l.split(RECORD_SEP)[9].split(',')})
    build_poi_vector_tables(align, {n: [os.path.join(PHOTOS, sorted(os.listdir(PHOTOS))[0])] for n in names},
                            str(tmp_path), torch.device('cpu'))
    common = ['--index_files', '%s,%s,unused' % (train, val), '--image_root', image_root, '--poi_tables', str(tmp_path),
              '--align_ckpt', str(tmp_path / 'align_model.pth'), '--bert_path', bert, '--batch_size', '4',
              '--device', 'cpu']
    # validate on the training pairs: the eval-mode (dropout-free) loss on them must go down
    fit = ['--index_files', '%s,%s,unused' % (train, train)] + common[2:]
    out = main(fit + ['--epoch', '4', '--lr', '1e-3', '--save_dir', str(tmp_path / 'rank'), '--seed', '0', '--aug', '0'])
    losses = [h['dev_loss'] for h in out['history']]
    assert len(losses) == 4 and losses[-1] < losses[0]
    name = os.path.basename(out['best_path'])
    epoch = [h['epoch'] for h in out['history'] if h['dev_accuracy'] == out['best_acc']][0]
    assert name == 'shoucai_siamese_train_concat_poi_%03d_%.4f.ckpt' % (epoch, out['best_acc'])
    state = torch.load(out['best_path'], weights_only=True)
    assert len(state) == 669 and next(iter(state)) == 'linear1.weight'  # bare state_dict
    metrics = eval_main(fit + ['--ranking_ckpt', out['best_path']])
    assert metrics['dev_accuracy'] == pytest.approx(out['best_acc'])
