"""common.plot: curves from the event files common.logger writes; one subplot per tag, runs overlaid."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common import logger
from common.errors import InputError
from common.plot import collect, figure_size, ordered_tags, plot_runs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_run(folder, tags):
    logger.configure(str(folder))
    for step in range(1, 6):
        for tag, scale in tags.items():
            logger.log_value(tag, scale / step, step=step * 10)
    logger.close()


@pytest.fixture
def runs(tmp_path):
    _write_run(tmp_path / 'runA' / 'log', {'train/loss': 2.0, 'rsum': 100.0})
    _write_run(tmp_path / 'runB', {'train/loss': 3.0, 'rsum': 50.0, 'r1': 1.0})
    return tmp_path


def test_collect_reads_every_scalar_exactly(runs):
    found = dict(collect([str(runs / 'runA'), str(runs / 'runB')]))
    assert sorted(found) == ['runA', 'runB']
    steps, values = found['runB']['r1']
    assert steps == [10, 20, 30, 40, 50]
    assert values == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert ordered_tags(list(found.items())) == ['train/loss', 'r1', 'rsum']


def test_cli_writes_png_with_one_subplot_per_tag(runs):
    out = runs / 'plots' / 'curves.png'
    proc = subprocess.run([sys.executable, '-m', 'common.plot', str(runs / 'runA'), str(runs / 'runB'),
                           '--out', str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'wrote %s (3 curves: train/loss, r1, rsum)' % out in proc.stdout
    img = Image.open(out)
    img.load()
    assert img.format == 'PNG' and img.size == figure_size(3) == (1500, 320)
    px = np.asarray(img.convert('RGB')).reshape(-1, 3)
    blue, orange = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours: both runs drawn
    assert (px == blue).all(axis=1).sum() > 100 and (px == orange).all(axis=1).sum() > 100


def test_grid_wraps_after_three_subplots(tmp_path):
    _write_run(tmp_path / 'run', {'a': 1.0, 'b': 1.0, 'c': 1.0, 'loss': 1.0})
    tags = plot_runs([str(tmp_path / 'run')], str(tmp_path / 'c.png'))
    assert tags == ['loss', 'a', 'b', 'c']
    assert Image.open(tmp_path / 'c.png').size == figure_size(4) == (1500, 640)
    assert [p for p in os.listdir(tmp_path) if p.endswith('.tmp')] == []


def test_no_event_files_is_one_clear_error(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(InputError, match='no TensorBoard event files'):
        collect([str(tmp_path / 'empty')])
    proc = subprocess.run([sys.executable, '-m', 'common.plot', str(tmp_path / 'empty'), '--out',
                           str(tmp_path / 'c.png')], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith('error: %s: no TensorBoard event files' % (tmp_path / 'empty'))
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'c.png').exists()
