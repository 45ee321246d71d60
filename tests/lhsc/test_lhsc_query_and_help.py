"""predict.py prints names from a mapping and writes a gallery; every entry script's --help is fast;
the similarity pass shows a progress bar when forced on."""
import json
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, 'tests', 'lhsc', 'data')
LEGACY = os.path.join(DATA, 'upstream', 'lhsc_legacy.pth.tar')
PHOTOS = os.path.join(REPO, 'avas', 'data', 'images_test')
ENV = dict(os.environ, OMP_NUM_THREADS='1')
SCRIPTS = ['train.py', 'evaluation.py', 'predict.py', 'vocab.py', 'make_demo_data.py', 'demo.py',
           'sgraf/train.py', 'sgraf/evaluation.py']


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_is_fast(script):
    start = time.time()
    done = subprocess.run([sys.executable, os.path.join(REPO, 'lhsc', script), '--help'], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and 'usage' in done.stdout
    assert time.time() - start < 1.5


def test_predict_prints_mapped_names_and_writes_gallery(tmp_path):
    photos = sorted(os.listdir(PHOTOS))
    mapping = tmp_path / 'id_mapping.json'
    mapping.write_text(json.dumps({'test': [os.path.join(PHOTOS, photos[i % len(photos)]) for i in range(30)]}))
    cmd = [sys.executable, os.path.join(REPO, 'lhsc', 'predict.py'), '--checkpoint', LEGACY, '--data_path', DATA,
           '--vocab_path', os.path.join(DATA, 'vocab'), '--device', 'cpu', '--query', 'a man on the grass',
           '--image_index', '2', '--top_k', '3', '--mapping', str(mapping), '--gallery', str(tmp_path / 'g')]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'image 2 (%s)' % photos[2] in done.stdout
    html = (tmp_path / 'g' / 'gallery.html').read_text()
    assert 'src="images/' in html and PHOTOS not in html  # relative paths
    with Image.open(tmp_path / 'g' / 'gallery.png') as png:
        assert png.size[0] > 0 and png.size[1] > 0


def test_evaluation_shows_a_progress_bar_when_forced(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, 'lhsc', 'evaluation.py'), '--model_path', LEGACY, '--data_path', DATA,
           '--vocab_path', os.path.join(DATA, 'vocab'), '--device', 'cpu', '--shard_size', '10']
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=dict(ENV, XMODAL_PROGRESS='1'))
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'similarity' in done.stderr and ('/s]' in done.stderr or 's/' in done.stderr)
    assert 'config:' in done.stdout and 'rsum:' in done.stdout
