"""What a user sees: fast --help, progress bars, the resolved config and timestamped lines, predict's
unified flags (old spellings kept), names from an image list, and the retrieval gallery."""
import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from common.runtime import add_runtime_args as common_runtime_args
from m2hse import opts, predict, test_global

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
UPSTREAM = os.path.join(HERE, 'data', 'upstream')
VOCAB = os.path.join(REPO, 'm2hse', 'vocab')
IMAGES = os.path.join(HERE, 'data', 'images')
ENTRY_SCRIPTS = ['train_global.py', 'train_local.py', 'test_global.py', 'test_local.py', 'predict.py', 'fuse.py',
                 'vocab.py', 'make_demo_data.py', 'extract_features.py', 'demo.py']
HEAVY = ('torch', 'torchvision', 'nltk', 'sklearn', 'matplotlib', 'cv2')


@pytest.mark.parametrize('script', ENTRY_SCRIPTS)
def test_help_imports_no_heavy_module(script):
    probe = ('import runpy, sys\nsys.argv = [%r, "--help"]\ntry:\n    runpy.run_path(%r, run_name="__main__")\n'
             'except SystemExit:\n    pass\nprint("HEAVY:" + ",".join(m for m in %r if m in sys.modules))'
             % (script, os.path.join(REPO, 'm2hse', script), HEAVY))
    out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'usage:' in out.stdout and out.stdout.strip().endswith('HEAVY:'), out.stdout[-300:]


@pytest.mark.parametrize('script', ['train_local.py', 'test_local.py', 'predict.py', 'extract_features.py'])
def test_help_answers_within_one_and_a_half_seconds(script):
    best = float('inf')
    for _ in range(2):  # the best of two runs: the machine is shared
        start = time.time()
        out = subprocess.run([sys.executable, os.path.join(REPO, 'm2hse', script), '--help'], capture_output=True)
        best = min(best, time.time() - start)
        assert out.returncode == 0
    assert best < 1.5


def test_runtime_flags_equal_common_runtime():
    ours, theirs = opts.add_runtime_args(argparse.ArgumentParser()), common_runtime_args(argparse.ArgumentParser())
    describe = lambda p: sorted((a.dest, tuple(a.option_strings), a.default, a.type, a.help) for a in p._actions
                                if a.dest != 'help')
    assert describe(ours) == describe(theirs)


def test_progress_bar_shows_when_forced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('XMODAL_PROGRESS', '1')
    monkeypatch.chdir(tmp_path)
    test_global.main(['--data_path', os.path.join(UPSTREAM, 'global'), '--vocab_path', VOCAB, '--device', 'cpu',
                      '--model_path', os.path.join(UPSTREAM, 'upstream_global.pth.tar')])
    err = capsys.readouterr().err
    assert 'encode' in err and re.search(r'(batch|it)/s|s/(batch|it)', err), err[-500:]


def test_no_progress_flag_hides_the_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('XMODAL_PROGRESS', '1')
    monkeypatch.chdir(tmp_path)
    test_global.main(['--data_path', os.path.join(UPSTREAM, 'global'), '--vocab_path', VOCAB, '--device', 'cpu',
                      '--model_path', os.path.join(UPSTREAM, 'upstream_global.pth.tar'), '--no_progress'])
    assert 'encode' not in capsys.readouterr().err


def test_training_prints_config_and_timestamped_lines(tmp_path):
    from m2hse import make_demo_data
    make_demo_data.main(['--out_dir', str(tmp_path), '--n_train', '40', '--n_dev', '20', '--cnn_dim', '16',
                         '--bovw_dim', '10', '--n_classes', '4'])
    out = subprocess.run([sys.executable, os.path.join(REPO, 'm2hse', 'train_global.py'), '--data_path',
                          './data/coarse-grained-data', '--data_name', 'corel5k_precomp', '--vocab_path', './vocab',
                          '--logger_name', 'r', '--model_name', 'r', '--num_epochs', '1', '--embed_size', '8',
                          '--word_dim', '8', '--cnn_dim', '16', '--bovw_dim', '10', '--batch_size', '20',
                          '--log_step', '1', '--device', 'cpu'], cwd=tmp_path, capture_output=True, text=True,
                         timeout=240, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'resolved config:' in out.stdout and '  vocab_size: 264' in out.stdout
    stamp = r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} '
    assert re.search(stamp + r'learning rate 0\.000200 in epoch 0$', out.stdout, re.M)
    assert re.search(stamp + r'epoch: 0; batch: 2/2; loss: ', out.stdout, re.M)
    assert 'i2t mAP ' in out.stdout  # upstream's result lines stay as they were


def _predict_args(level, *extra):
    return ['--data_path', os.path.join(UPSTREAM, level), '--vocab_path', VOCAB, '--top_k', '3',
            '--no_progress'] + list(extra)


def test_predict_checkpoint_and_model_path_are_one_flag(capsys):
    ckpt = os.path.join(UPSTREAM, 'upstream_local.pth.tar')
    new = predict.main(_predict_args('local', '--checkpoint', ckpt, '--query', 'sky jet plane'))
    old = predict.main(_predict_args('local', '--model_path', ckpt, '--query', 'sky jet plane'))
    assert new == old and len(new['images']) == 3


def test_predict_export_always_writes_an_npz(tmp_path):
    predict.main(_predict_args('global', '--checkpoint', os.path.join(UPSTREAM, 'upstream_global.pth.tar'),
                               '--export', str(tmp_path / 'emb')))
    assert not (tmp_path / 'emb').exists()
    with np.load(tmp_path / 'emb.npz') as emb:
        assert emb['images'].shape == (12, 16)


def _image_list(tmp_path):
    names = sorted(os.listdir(IMAGES))
    path = tmp_path / 'test_images.txt'
    path.write_text(''.join('%s\n' % names[i % len(names)] for i in range(12)))
    return str(path)


def test_predict_prints_image_names_from_the_list(tmp_path, capsys):
    image_list = _image_list(tmp_path)
    predict.main(_predict_args('local', '--checkpoint', os.path.join(UPSTREAM, 'upstream_local.pth.tar'),
                               '--query', 'sky jet plane', '--image_index', '2', '--image_list', image_list,
                               '--image_dir', IMAGES))
    out = capsys.readouterr().out
    names = sorted(os.listdir(IMAGES))
    assert re.search(r' 1\. TB\S+\.jpg  score ', out) and 'top-3 captions for %s:' % names[2] in out


def test_predict_image_list_of_another_length_is_refused(tmp_path):
    from common.errors import InputError
    (tmp_path / 'short.txt').write_text('a.jpg\nb.jpg\n')
    with pytest.raises(InputError, match='short.txt: lists 2 images but the split has 12 items'):
        predict.main(_predict_args('global', '--checkpoint', os.path.join(UPSTREAM, 'upstream_global.pth.tar'),
                                   '--query', 'sky', '--image_list', str(tmp_path / 'short.txt')))


def test_predict_gallery_has_pictures_and_marks_ground_truth(tmp_path):
    pytest.importorskip('common.gallery')
    from PIL import Image
    res = predict.main(_predict_args('local', '--checkpoint', os.path.join(UPSTREAM, 'upstream_local.pth.tar'),
                                     '--query', 'sky jet plane', '--image_index', '10', '--image_list',
                                     _image_list(tmp_path), '--image_dir', IMAGES, '--gallery', str(tmp_path / 'g')))
    html_path, png_path = res['gallery']
    html = open(html_path, encoding='utf-8').read()
    assert 'sky jet plane' in html and '<img' in html and IMAGES not in html  # relative src paths
    with Image.open(png_path) as png:
        assert png.size[0] > 100 and png.size[1] > 100


def test_results_files_name_their_source_and_invent_no_number():
    from common.results import read_results
    folder = os.path.join(REPO, 'm2hse', 'results')
    names = sorted(os.listdir(folder))
    assert names == ['corel5k_test_m2hse.json', 'corel5k_test_m2hse_global.json', 'corel5k_test_m2hse_local.json']
    for name in names:
        payload = read_results(os.path.join(folder, name))
        source = payload['source']
        assert 'Expert Systems with Applications 216 (2023) 119415' in source['paper']
        assert source['dataset'].startswith('Corel5K') and source['split'] == 'test'
        assert source['status'] == 'number not found'
        assert not {'i2t_mAP', 't2i_mAP', 'mAP_sum'} & set(payload)  # no metric until read from the paper
