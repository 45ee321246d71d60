"""The avas command lines: --help of every entry script is fast (no torch before parsing), the
progress bars draw on a (forced) terminal, predict.py's unified flags and aliases, and the shipped
paper numbers are results files in the --out_json schema."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from avas.formats import check_images
from tests.avas.avas_testlib import PHOTOS, REPO

ENTRY_SCRIPTS = ['align_recall_test_with_mmkg_model.py', 'align_recall@K.py', 'recall_at_k.py', 'local_eval_test.py',
                 'train_align.py', 'train_ranking.py', 'predict.py', 'poi_tables.py', 'download_images.py', 'demo.py',
                 'avas_page/align_model_test_with_mkg.py', 'avas_page/visualization_csv.py']


@pytest.mark.parametrize('script', ENTRY_SCRIPTS)
def test_help_is_fast_and_imports_no_torch(script):
    # CPU seconds, not wall: the bound holds on a loaded machine too (idle, wall ~ CPU: 0.3-0.7 s)
    code = ('import runpy, sys, time; sys.argv = [%r, "--help"]; start = time.process_time()\n'
            'try:\n    runpy.run_path(%r, run_name="__main__")\nexcept SystemExit:\n    pass\n'
            'print("HELP_SECONDS", time.process_time() - start)\n'
            'assert "torch" not in sys.modules, "torch imported before parsing"'
            % (script, os.path.join(REPO, 'avas', script)))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage:' in proc.stdout
    assert float(proc.stdout.split('HELP_SECONDS')[1]) < 1.5


def test_progress_bar_on_image_verification(monkeypatch, capsys):
    monkeypatch.setenv('XMODAL_PROGRESS', '1')
    paths = sorted(os.path.join(PHOTOS, p) for p in os.listdir(PHOTOS))[:4]
    good, bad = check_images(paths, what='training images')
    assert good == paths and bad == []
    err = capsys.readouterr().err
    assert 'verify training images' in err and ('img/s' in err or 's/img' in err)


def test_progress_bar_off_with_no_progress(monkeypatch, capsys):
    monkeypatch.setenv('XMODAL_PROGRESS', '1')
    check_images(sorted(os.path.join(PHOTOS, p) for p in os.listdir(PHOTOS))[:2], show_progress=False)
    assert 'img/s' not in capsys.readouterr().err


class FixedTower(torch.nn.Module):
    """encode_image returns one fixed unit vector per image (test double of the ALIGN)."""

    def encode_image(self, image, norm=True):
        return torch.nn.functional.normalize(image.mean(dim=(2, 3)), dim=1)


def test_progress_bar_and_upstream_lines_on_image_embedding(monkeypatch, capsys):
    from avas.recall import embed_images
    monkeypatch.setenv('XMODAL_PROGRESS', '1')
    paths = sorted(os.path.join(PHOTOS, p) for p in os.listdir(PHOTOS))[:3]
    out = embed_images(FixedTower(), paths, 2, torch.device('cpu'))
    captured = capsys.readouterr()
    assert out.embeddings.shape == (3, 3) and out.paths == paths
    assert 'embed images' in captured.err and ('batch/s' in captured.err or 's/batch' in captured.err)
    assert 'iterations= 2' in captured.out and captured.out.count('batch= 2 costs=') == 2  # upstream's lines stay


@pytest.mark.parametrize('name,metric,value', [('recall_at5_poi500.json', 'recall@5', 0.788),
                                               ('ranking_pairwise_accuracy_val.json', 'dev_accuracy', 0.652)])
def test_paper_numbers_are_results_files(name, metric, value):
    from common.results import read_results
    payload = read_results(os.path.join(REPO, 'avas', 'results', name))
    assert payload[metric] == value
    assert 'README.md line' in payload['source']['table']


@pytest.fixture(scope='module')
def predict_env(tmp_path_factory):
    from avas.align_model import ALIGN
    from tests.avas.avas_testlib import fill_deterministic, make_small_bert
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('predict')
    bert = make_small_bert(str(root / 'bert'))
    align = fill_deterministic(ALIGN(bert_path=bert), seed=5)
    torch.save({'epoch': 0, 'min_loss': 0.0, 'state_dict': align.state_dict()}, str(root / 'align_model.pth'))
    images = root / 'imgs'
    images.mkdir()
    photos = sorted(os.listdir(PHOTOS))
    rows = []
    for i, (poi_id, name) in enumerate([('10061', '普陀山'), ('10060', '北海海底世界')]):
        for rank in (1, 2):
            (images / ('%s_%d.jpg' % (poi_id, rank))).write_bytes(open(os.path.join(PHOTOS, photos[2 * i + rank]), 'rb').read())
            rows.append('%s,%s,http://h/%d.jpg,%d,0,0,0' % (poi_id, name, i, rank))
    (root / 'map.csv').write_text('\n'.join(rows) + '\n', encoding='utf-8')
    return root, bert


def test_predict_unified_flags_names_and_export(predict_env, capsys):
    from avas.predict import main
    root, bert = predict_env
    base = ['--bert_path', bert, '--image_dir', str(root / 'imgs'), '--device', 'cpu']
    new = main(base + ['--checkpoint', str(root / 'align_model.pth'), '--query', '普陀山', '--top_k', '3',
                       '--mapping', str(root / 'map.csv'), '--export', str(root / 'out.npz')])
    printed = capsys.readouterr().out
    old = main(base + ['--model_path', str(root / 'align_model.pth'), '--title', '普陀山', '--top', '3'])
    assert [s for _, s in new['recall']] == [s for _, s in old['recall']]  # old spellings: same run
    names = [r['name'] for r in new['gallery_rows']]
    assert len(names) == 3 and all(name in printed for name in names)  # names, not paths or row indices
    assert set(names) <= {'普陀山 #1 (10061_1.jpg)', '普陀山 #2 (10061_2.jpg)', '北海海底世界 #1 (10060_1.jpg)',
                          '北海海底世界 #2 (10060_2.jpg)'}
    assert all(r['gt'] == r['name'].startswith('普陀山') for r in new['gallery_rows'])
    saved = np.load(str(root / 'out.npz'))
    assert saved['names'].shape == (4,) and saved['scores'].tolist() == [s for _, s in new['recall']]
    assert str(saved['query']) == '普陀山'


def test_predict_export_needs_npz_suffix(predict_env):
    from avas.predict import main
    from common.errors import InputError
    root, bert = predict_env
    with pytest.raises(InputError, match='.npz'):
        main(['--checkpoint', str(root / 'align_model.pth'), '--bert_path', bert, '--query', 'x',
              '--image_dir', str(root / 'imgs'), '--export', str(root / 'out.txt')])


def test_predict_gallery_relative_paths_and_ground_truth(predict_env):
    pytest.importorskip('common.gallery', reason='common.gallery not available yet')
    from avas.predict import main
    root, bert = predict_env
    out = root / 'gallery'
    main(['--checkpoint', str(root / 'align_model.pth'), '--bert_path', bert, '--query', '普陀山', '--top_k', '4',
          '--image_dir', str(root / 'imgs'), '--mapping', str(root / 'map.csv'), '--gallery', str(out),
          '--device', 'cpu'])
    html = (out / 'gallery.html').read_text(encoding='utf-8')
    assert str(root) not in html and '普陀山 #1' in html
    assert (out / 'gallery.png').stat().st_size > 0


def test_print_config_at_start(tmp_path, capsys):
    from avas.recall_at_k import main
    (tmp_path / 'res.csv').write_text('1,a,d/1_1.jpg,0.5\n1,a,d/2_1.jpg,0.1\n', encoding='utf-8')
    assert main(['--file', str(tmp_path / 'res.csv'), '--k', '1']) == 1.0
    out = capsys.readouterr().out
    assert out.index('config:') < out.index('final recall k=') and '  k: 1' in out
