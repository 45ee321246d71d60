"""The entry scripts end to end on tiny real data (photos, POI names, val-CSV lines) with
deterministic weights: recall inference -> CSV -> recall@K; local_eval_test with a missing image
(counted, reported, --strict fatal); the AVAS keyword scorer. A corrupt JPEG in the image folder is
skipped and counted (upstream scored it as a zeros image)."""
import contextlib
import io
import json
import os
import runpy
import shutil

import numpy as np
import pytest
import torch

from avas.align_model import ALIGN, POSITION_IDS_KEY
from avas.data import RECORD_SEP, load_image_or_zeros, read_ranking_lines, read_recall_results
from avas.evaluation import pairwise_accuracy, recall_at_k
from avas.model_local import Multimodal_Model
from sklearn.metrics import roc_auc_score

from common.errors import InputError
from tests.avas.avas_testlib import (PHOTOS, PIC_NUM, REPO, VAL_CSV, fill_deterministic, make_small_bert,
                                     set_bn_stats_from)

POIS = [('10060', '北海海底世界'), ('10061', '普陀山'), ('10062', 'Hello Kitty乐园')]


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    torch.set_num_threads(1)
    root = str(tmp_path_factory.mktemp('entry'))
    bert = make_small_bert(os.path.join(root, 'bert'))
    photos = sorted(os.listdir(PHOTOS))
    image_dir = os.path.join(root, 'recall_images')
    os.makedirs(image_dir)
    rows = []
    for i, (poi_id, name) in enumerate(POIS):
        for rank in (1, 2):
            shutil.copy(os.path.join(PHOTOS, photos[2 * i + rank]), os.path.join(image_dir, '%s_%d.jpg' % (poi_id, rank)))
            rows.append('%s,%s,http://h/%d.jpg,%d,1,1,1' % (poi_id, name, i, rank))
    open(os.path.join(image_dir, 'notes.txt'), 'w').write('not an image')
    open(os.path.join(image_dir, '99999_1.jpg'), 'wb').write(b'broken jpeg')  # -> skipped, reported
    with open(os.path.join(root, 'recall.csv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows) + '\n')
    align = fill_deterministic(ALIGN(bert_path=bert, with_mkg=True), seed=1)
    imgs = torch.from_numpy(np.stack([load_image_or_zeros(os.path.join(PHOTOS, p)) for p in photos[:6]]))
    set_bn_stats_from(align.image_model, imgs)
    sd = dict(align.state_dict())
    sd[POSITION_IDS_KEY] = torch.arange(512).unsqueeze(0)
    torch.save({'epoch': 0, 'min_loss': 1.0, 'state_dict': sd}, os.path.join(root, 'align_model.pth'))
    return root, bert, image_dir


def _recall_argv(env):
    root, bert, image_dir = env
    return ['--model_path', os.path.join(root, 'align_model.pth'), '--bert_path', bert, '--image_dir', image_dir,
            '--in_csv', os.path.join(root, 'recall.csv'), '--batch_size', '4', '--device', 'cpu']


@pytest.fixture(scope='module')
def recall_run(env):
    """One run of the recall script; its printed output, rows, score matrix and JSON summary."""
    from avas.align_recall_test_with_mmkg_model import main as recall_main
    root = env[0]
    out_csv = os.path.join(root, 'out', 'res.csv')
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        recall_main(_recall_argv(env) + ['--out_csv', out_csv, '--out_json', os.path.join(root, 'r.json'),
                                         '--out_scores', os.path.join(root, 's.npy')])
    return {'printed': printed.getvalue(), 'csv': out_csv, 'rows': read_recall_results(out_csv),
            'scores': np.load(os.path.join(root, 's.npy')), 'json': json.load(open(os.path.join(root, 'r.json')))}


def test_recall_script_skips_and_reports_the_corrupt_jpeg(recall_run):
    assert 'unreadable image' in recall_run['printed'] and '99999_1.jpg' in recall_run['printed']
    assert len(recall_run['rows']) == 3 * 6  # the broken JPEG is skipped
    assert not any('99999' in r[2] for r in recall_run['rows'])


def test_recall_rows_sorted_listing_and_csv_order_of_pois(env, recall_run):
    res, image_dir = recall_run['rows'], env[2]
    images = [r[2] for r in res[:6]]
    assert images == sorted(images) and all(p.startswith(image_dir) for p in images)  # sorted listing
    assert [r[0] for r in res[::6]] == ['10060', '10061', '10062']  # CSV order of POIs


def test_recall_score_matrix_matches_rows_and_json(recall_run):
    res, scores, summary = recall_run['rows'], recall_run['scores'], recall_run['json']
    assert scores.shape == (3, 6) and np.abs(scores).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(scores.reshape(-1), [r[3] for r in res], rtol=1e-6)
    assert summary['recall@5'] == recall_at_k(res, 5)
    assert 'final recall k= {:.3f}'.format(summary['recall@5']) in recall_run['printed']


def test_recall_upstream_text_path_gives_the_same_scores(env, recall_run):
    """upstream's one-string-at-a-time text path gives the same scores as padded batches"""
    from avas.align_recall_test_with_mmkg_model import main as recall_main
    one_csv = os.path.join(env[0], 'one.csv')
    recall_main(_recall_argv(env) + ['--out_csv', one_csv, '--text_batch_size', '1'])
    np.testing.assert_allclose([r[3] for r in read_recall_results(one_csv)], [r[3] for r in recall_run['rows']],
                               atol=1e-5)


def test_align_recall_at_k_by_path_with_file_k_out_json(env, recall_run, capsys):
    """the upstream file name, run by path, with --file/--k/--out_json"""
    root, res = env[0], recall_run['rows']
    argv = ['align_recall@K.py', '--file', recall_run['csv'], '--k', '2', '--out_json', os.path.join(root, 'k.json')]
    old = list(__import__('sys').argv)
    __import__('sys').argv = argv
    try:
        with pytest.raises(SystemExit) as done:  # cli_main exits with the script's status
            runpy.run_path(os.path.join(REPO, 'avas', 'align_recall@K.py'), run_name='__main__')
        assert done.value.code == 0
    finally:
        __import__('sys').argv = old
    assert json.load(open(os.path.join(root, 'k.json')))['recall@2'] == recall_at_k(res, 2)
    assert 'final recall k= {:.3f}'.format(recall_at_k(res, 2)) in capsys.readouterr().out


def _ranking_files(env):
    from avas.align_model import build_model
    from avas.poi_tables import build_poi_vector_tables
    root, bert, image_dir = env
    photos = sorted(os.listdir(PHOTOS))
    image_root = os.path.join(root, 'oss_images')
    os.makedirs(image_root, exist_ok=True)
    lines = []
    for k, (_, line) in enumerate(read_ranking_lines(VAL_CSV)[:4]):
        f = line.split(RECORD_SEP)
        a, b = photos[10 + 2 * k], photos[11 + 2 * k]
        f[7], f[8] = 'https://oss.example/x/' + a, 'https://oss.example/x/' + b
        for p in (a, b):
            if k != 2 or p != b:  # pair 3 lacks its B image
                shutil.copy(os.path.join(PHOTOS, p), image_root)
        lines.append(RECORD_SEP.join(f))
    val = os.path.join(root, 'val.csv')
    open(val, 'w', encoding='utf-8').write('\n'.join(lines))
    tables = os.path.join(root, 'tables')
    os.makedirs(tables, exist_ok=True)
    shutil.copy(PIC_NUM, tables)
    model = build_model(os.path.join(root, 'align_model.pth'), bert)
    names = sorted({n for l in lines for n in l.split(RECORD_SEP)[9].split(',')})
    build_poi_vector_tables(model, {n: [os.path.join(PHOTOS, photos[i % 6])] for i, n in enumerate(names)},
                            tables, torch.device('cpu'))
    ranking = fill_deterministic(Multimodal_Model(model), seed=2)
    rsd = dict(ranking.state_dict())
    rsd['align_model.' + POSITION_IDS_KEY] = torch.arange(512).unsqueeze(0)
    torch.save(rsd, os.path.join(root, 'rank.ckpt'))
    return val, image_root, tables, photos[15]


@pytest.fixture(scope='module')
def ranking(env):
    """Val CSV (pair on line 3 lacks its B image), POI tables, ranking checkpoint; eval argv."""
    root, bert, _ = env
    val, image_root, tables, missing = _ranking_files(env)
    argv = ['--index_files', 'absent_train.csv,%s,absent_test.csv' % val, '--image_root', image_root,
            '--poi_tables', tables, '--align_ckpt', os.path.join(root, 'align_model.pth'), '--bert_path', bert,
            '--ranking_ckpt', os.path.join(root, 'rank.ckpt'), '--batch_size', '2', '--device', 'cpu']
    return {'argv': argv, 'missing': missing, 'tables': tables}


@pytest.fixture(scope='module')
def eval_run(env, ranking):
    from avas.local_eval_test import main as eval_main
    root = env[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = eval_main(ranking['argv'] + ['--out_json', os.path.join(root, 'e.json'),
                                               '--out_scores', os.path.join(root, 'e.npy')])
    return {'metrics': metrics, 'printed': printed.getvalue(), 'saved': json.load(open(os.path.join(root, 'e.json'))),
            'scores': np.load(os.path.join(root, 'e.npy'))}


LABELS = [0.0, 1.0, 1.0]  # ctr_a > ctr_b on val lines 1, 2, 4 of the real CSV
BCE = lambda d, y: -(y * np.log(1 / (1 + np.exp(-d))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-d))))  # noqa: E731


def test_local_eval_counts_and_names_the_dropped_pair(eval_run, ranking):
    out, saved = eval_run['printed'], eval_run['saved']
    assert 'Dev Loss:' in out and 'Dev accuracy:' in out and 'pairwise accuracy' in out
    assert 'pair dropped, line 3' in out and ranking['missing'] in out
    for key in ('dev_accuracy', 'dev_loss', 'roc_auc', 'n_pairs', 'n_dropped'):
        assert saved[key] == eval_run['metrics'][key]
    assert saved['n_pairs'] == 3 and saved['n_dropped'] == 1


def test_local_eval_accuracy_and_roc_auc_of_saved_scores(eval_run):
    saved, scores = eval_run['saved'], eval_run['scores']
    assert saved['dev_accuracy'] == pytest.approx(pairwise_accuracy(LABELS, scores[:, 0], scores[:, 1]))
    assert saved['roc_auc'] == pytest.approx(roc_auc_score(LABELS, scores[:, 0] - scores[:, 1]))


def test_local_eval_dev_loss_is_mean_of_batch_means(eval_run):
    saved, scores = eval_run['saved'], eval_run['scores']
    assert 0.0 < saved['dev_loss'] < 5.0
    # Dev Loss = mean over batches of batch means: batches hold val lines (1, 2) and (4) [3 dropped]
    per_pair = BCE(scores[:, 0] - scores[:, 1], np.array(LABELS))
    assert saved['dev_loss'] == pytest.approx((per_pair[:2].mean() + per_pair[2]) / 2, rel=1e-5)


def test_local_eval_softmax_1_loss(eval_run, ranking):
    from avas.local_eval_test import main as eval_main
    scores = eval_run['scores']
    soft = eval_main(ranking['argv'] + ['--softmax', '1'])  # softmax over (s1, s2): s1 - s2 -> tanh((s1 - s2) / 2)
    per_pair = BCE(np.tanh((scores[:, 0] - scores[:, 1]) / 2), np.array(LABELS))
    assert soft['dev_loss'] == pytest.approx((per_pair[:2].mean() + per_pair[2]) / 2, rel=1e-5)


def test_local_eval_strict_makes_the_missing_image_an_error(ranking):
    from avas.local_eval_test import main as eval_main
    with pytest.raises(InputError, match='line 3.*%s.*--strict' % ranking['missing']):
        eval_main(ranking['argv'] + ['--strict'])


def test_local_eval_use_norm_vector_0_needs_the_wo_norm_table(env, ranking, capsys):
    from avas.align_model import build_model
    from avas.local_eval_test import main as eval_main
    from avas.poi_tables import build_poi_vector_tables
    root, bert, _ = env
    with pytest.raises(InputError, match='0110_imgs_avg_10vector_wo_norm'):
        eval_main(ranking['argv'] + ['--use_norm_vector', '0'])
    model = build_model(os.path.join(root, 'align_model.pth'), bert)
    build_poi_vector_tables(model, {'朱家角': [os.path.join(PHOTOS, ranking['missing'])]}, ranking['tables'],
                            torch.device('cpu'), use_norm=0)
    capsys.readouterr()
    raw = eval_main(ranking['argv'] + ['--use_norm_vector', '0'])  # un-normalised embeddings + the _wo_norm table
    assert raw['n_pairs'] == 3 and 'use wo norm vector.npy' in capsys.readouterr().out


def test_avas_keyword_scorer(env):
    score_main = runpy.run_path(os.path.join(REPO, 'avas', 'avas_page', 'align_model_test_with_mkg.py'))['main']
    root, bert, image_dir = env
    out = os.path.join(root, 'kw.csv')
    score_main(['--model_path', os.path.join(root, 'align_model.pth'), '--bert_path', bert, '--image_dir', image_dir,
                '--out_csv', out, '--batch_size', '5', '--device', 'cpu'])  # 6 readable images: a 1-image last batch
    rows = [l.strip().split(',') for l in open(out, encoding='utf-8')]
    assert len(rows) == 6 and all(os.path.isabs(p) for p, _ in rows)
    assert all(-1.0 <= float(s) <= 1.0 for _, s in rows)


def test_predict_recall_matches_the_recall_script(env, recall_run):
    from avas.predict import main as predict_main
    root, bert, image_dir = env
    base = ['--model_path', os.path.join(root, 'align_model.pth'), '--bert_path', bert, '--device', 'cpu']
    out = predict_main(base + ['--title', '普陀山', '--image_dir', image_dir, '--top', '3'])
    scores = [s for _, s in out['recall']]
    assert len(scores) == 6 and scores == sorted(scores, reverse=True)
    expect = {p: s for poi, _, p, s in recall_run['rows'] if poi == '10061'}  # same model, same POI name
    for path, score in out['recall']:
        assert score == pytest.approx(expect[path], abs=1e-5)


def test_predict_pair_probability_is_sigmoid_of_score_difference(env, ranking):
    from avas.predict import main as predict_main
    root, bert, _ = env
    base = ['--model_path', os.path.join(root, 'align_model.pth'), '--bert_path', bert, '--device', 'cpu']
    photos = sorted(os.listdir(PHOTOS))
    pair = predict_main(base + ['--title', '普陀山一日游', '--poi_names', '普陀山', '--ranking_ckpt',
                                os.path.join(root, 'rank.ckpt'), '--image_a', os.path.join(PHOTOS, photos[0]),
                                '--image_b', os.path.join(PHOTOS, photos[1])])['pair']
    s1, s2, p = pair
    assert p == pytest.approx(1 / (1 + np.exp(-(s1 - s2))), rel=1e-6)


def test_predict_ranking_needs_both_images(env, ranking):
    from avas.predict import main as predict_main
    root, bert, _ = env
    base = ['--model_path', os.path.join(root, 'align_model.pth'), '--bert_path', bert, '--device', 'cpu']
    with pytest.raises(InputError, match='--image_a'):
        predict_main(base + ['--title', 'x', '--ranking_ckpt', os.path.join(root, 'rank.ckpt')])


@pytest.mark.cuda
def test_cuda_recall_matches_cpu(env):
    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA GPU')
    from avas.align_recall_test_with_mmkg_model import main as recall_main
    root, bert, image_dir = env
    common = ['--model_path', os.path.join(root, 'align_model.pth'), '--bert_path', bert, '--image_dir', image_dir,
              '--in_csv', os.path.join(root, 'recall.csv'), '--out_csv', os.path.join(root, 'gpu.csv')]
    cpu = recall_main(common + ['--device', 'cpu'])['scores']
    gpu = recall_main(common + ['--device', 'cuda'])['scores']
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    amp = recall_main(common + ['--device', 'cuda', '--amp'])['scores']
    np.testing.assert_allclose(amp, cpu, atol=2e-2)
