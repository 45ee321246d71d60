import json
import re

from common import demo


def test_demo_runner_collects_rows_and_flags_missing_and_failing_papers(tmp_path, monkeypatch):
    repo = tmp_path / 'repo'
    (repo / 'hsl').mkdir(parents=True)
    (repo / 'hsl' / 'demo.py').write_text(
        'import argparse, json, os\n'
        'p = argparse.ArgumentParser(); p.add_argument("--out_dir"); a = p.parse_args()\n'
        'json.dump([{"paper": "hsl", "command": "python main.py", "metric": "nDCG@5", "value": 0.61,'
        ' "baseline": 0.2, "wall_s": 1.5}], open(os.path.join(a.out_dir, "summary.json"), "w"))\n')
    (repo / 'fhn').mkdir()
    (repo / 'fhn' / 'demo.py').write_text('raise SystemExit(3)\n')
    monkeypatch.setattr(demo, 'REPO', str(repo))
    out = tmp_path / 'out'
    code = demo.main(['--papers', 'hsl', 'lhsc', 'fhn', '--out_dir', str(out)])
    assert code == 1  # fhn failed
    rows = json.loads((out / 'summary.json').read_text())
    assert [(r['paper'], r['status']) for r in rows] == [('hsl', 'ok'), ('lhsc', 'missing'), ('fhn', 'failed')]
    assert rows[0]['value'] == 0.61
    table = (out / 'summary.md').read_text()
    assert '| hsl | `python main.py` | nDCG@5 | 0.6100 | 0.2000 | 1.5 |' in table
    assert 'no demo yet' in table and 'FAILED (3)' in table


def test_run_step_shows_repo_relative_command_logs_output_and_fails_with_its_tail(tmp_path):
    import os
    import sys

    import pytest
    script = os.path.join(demo.REPO, 'common', 'demo.py')
    log = tmp_path / 'demo.log'
    step = demo.run_step([sys.executable, script, '--help'], str(tmp_path), log=str(log))
    assert step.command == 'python common/demo.py --help'
    assert 'summary table' in step.output and step.wall_s > 0
    assert log.read_text().startswith('$ python common/demo.py --help\n')
    with pytest.raises(SystemExit, match=r'demo step failed \(exit 3\): python -c .*\n.*boom'):
        demo.run_step([sys.executable, '-c', 'import sys; print("boom"); sys.exit(3)'], str(tmp_path))


def test_demo_draws_curves_and_links_them_with_the_papers_pictures(tmp_path, monkeypatch):
    from PIL import Image

    from common.plot import figure_size
    repo = tmp_path / 'repo'
    (repo / 'lhsc').mkdir(parents=True)
    (repo / 'lhsc' / 'demo.py').write_text(
        'import argparse, json, os\n'
        'from common import logger\n'
        'p = argparse.ArgumentParser(); p.add_argument("--out_dir"); a = p.parse_args()\n'
        'logger.configure(os.path.join(a.out_dir, "runs", "log"))\n'
        'for step in range(3):\n'
        '    logger.log_value("loss", 1.0 / (step + 1), step=step); logger.log_value("rsum", step, step=step)\n'
        'logger.close()\n'
        'json.dump([{"paper": "lhsc", "command": "python train.py", "metric": "rsum", "value": 2.0,'
        ' "baseline": 0.5, "links": {"gallery": "gallery/gallery.html", "gallery_png": "gallery/gallery.png"}},'
        ' {"paper": "lhsc", "command": "python train.py", "metric": "wall", "value": 1.0, "baseline": None}],'
        ' open(os.path.join(a.out_dir, "summary.json"), "w"))\n')
    (repo / 'fhn').mkdir()
    (repo / 'fhn' / 'demo.py').write_text(  # no event files: no curves, a note, still ok
        'import argparse, json, os\n'
        'p = argparse.ArgumentParser(); p.add_argument("--out_dir"); a = p.parse_args()\n'
        'json.dump([{"paper": "fhn", "command": "run.py", "metric": "auc", "value": 0.9, "baseline": 0.5}],'
        ' open(os.path.join(a.out_dir, "summary.json"), "w"))\n')
    monkeypatch.setattr(demo, 'REPO', str(repo))
    monkeypatch.setenv('PYTHONPATH', demo.__file__.rsplit('/common/', 1)[0])
    out = tmp_path / 'out'
    assert demo.main(['--papers', 'lhsc', 'fhn', '--out_dir', str(out)]) == 0
    rows = json.loads((out / 'summary.json').read_text())
    assert rows[0]['links'] == {'curves': 'lhsc/curves.png', 'gallery': 'lhsc/gallery/gallery.html',
                                'gallery_png': 'lhsc/gallery/gallery.png'}
    assert rows[1]['links'] == {} and rows[2]['links'] == {}
    assert Image.open(out / 'lhsc' / 'curves.png').size == figure_size(2)
    assert not (out / 'fhn' / 'curves.png').exists()
    table = (out / 'summary.md').read_text()
    assert re.search(r'\| lhsc \| `python train.py` \| rsum \| 2.0000 \| 0.5000 \| [0-9.]+ \| '
                     r'\[curves\]\(lhsc/curves.png\) \[gallery\]\(lhsc/gallery/gallery.html\) '
                     r'\[gallery_png\]\(lhsc/gallery/gallery.png\) \|\n', table)
    assert re.search(r'\| fhn \| `run.py` \| auc \| 0.9000 \| 0.5000 \| [0-9.]+ \| - \|\n', table)
