import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from common import diff
from common.results import SCHEMA_VERSION, read_results, save_scores, write_results


def test_write_results_schema_and_provenance(tmp_path):
    ckpt = tmp_path / 'model_best.pth.tar'
    ckpt.write_bytes(b'abc')
    path = tmp_path / 'r.json'
    write_results(str(path), {'rsum': np.float64(401.123456789012), 'i2t': {'r1': np.float32(0.5)},
                              'n_images': np.int64(1000), 'per_user': np.array([1.0, 2.5]),
                              'loss': torch.tensor(0.25), 'bad': float('nan')},
                  paper='lhsc', argv=['evaluation.py', '--fold5'], seed=3, checkpoint=str(ckpt),
                  data_path=str(tmp_path))
    payload = json.loads(path.read_text())
    assert payload['schema_version'] == SCHEMA_VERSION
    assert payload['rsum'] == 401.123456789012  # full precision
    assert payload['i2t'] == {'r1': 0.5} and payload['n_images'] == 1000
    assert payload['per_user'] == [1.0, 2.5] and payload['loss'] == 0.25 and payload['bad'] is None
    prov = payload['provenance']
    assert prov['paper'] == 'lhsc' and prov['command'] == ['evaluation.py', '--fold5'] and prov['seed'] == 3
    # sha256 of b'abc'
    assert prov['checkpoints'][0]['sha256'] == 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    assert 'torch' in prov['packages'] and prov['data_path'] == str(tmp_path)
    assert read_results(str(path))['rsum'] == payload['rsum']
    with pytest.raises(ValueError, match='reserved'):
        write_results(str(path), {'provenance': 1}, paper='x')


def test_save_scores_is_float64_npy(tmp_path):
    path = tmp_path / 'sims.npy'
    save_scores(str(path), np.arange(6, dtype=np.float32).reshape(2, 3))
    loaded = np.load(path)
    assert loaded.dtype == np.float64 and loaded.shape == (2, 3) and loaded[1, 2] == 5.0


def _results(tmp_path, name, value, seed):
    path = tmp_path / name
    write_results(str(path), {'i2t': {'r1': value, 'r5': 90.0}, 'rsum': 400.0}, paper='lhsc', seed=seed)
    return str(path)


def test_diff_equal_results_exit_zero_despite_different_provenance(tmp_path, capsys):
    a = _results(tmp_path, 'a.json', 70.0, seed=1)
    b = _results(tmp_path, 'b.json', 70.0 + 1e-9, seed=2)
    assert diff.main([a, b]) == 0
    out = capsys.readouterr().out
    assert 'i2t.r1' in out and '3 compared, 0 differ' in out


def test_diff_reports_differences_and_missing_keys(tmp_path, capsys):
    a = _results(tmp_path, 'a.json', 70.0, seed=1)
    b = _results(tmp_path, 'b.json', 71.0, seed=1)
    assert diff.main([a, b]) == 1
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('i2t.r1')][0]
    assert line.split()[1:] == ['70.0', '71.0', 'DIFF']
    assert diff.main([a, b, '--atol', '2']) == 0
    c = tmp_path / 'c.json'
    payload = json.loads(open(a).read())
    payload['extra_metric'] = 1.0
    c.write_text(json.dumps(payload))
    assert diff.main([a, str(c)]) == 1


def test_diff_score_matrices_via_cli(tmp_path):
    a, b = tmp_path / 'a.npy', tmp_path / 'b.npy'
    save_scores(str(a), np.ones((3, 4)))
    save_scores(str(b), np.ones((3, 4)) + np.eye(3, 4) * 1e-3)
    run = lambda *extra: subprocess.run([sys.executable, '-m', 'common.diff', str(a), str(b), *extra],
                                        capture_output=True, text=True)
    first = run()
    assert first.returncode == 1 and 'max|a-b|' in first.stdout and 'DIFF' in first.stdout
    assert run('--atol', '1e-2').returncode == 0
    save_scores(str(b), np.ones((4, 3)))
    assert 'shape' in run().stdout and run().returncode == 1


def test_diff_names_the_metrics_the_reference_lacks_and_the_run_lacks(tmp_path, capsys):
    run = tmp_path / 'run.json'
    run.write_text(json.dumps({'schema_version': 1, 'rsum': 500.0, 'i2t': {'r1': 70.0, 'r5': 90.0},
                               'provenance': {'seed': 1}}))
    ref = tmp_path / 'ref.json'  # a reference row as shipped in <paper>/results/: source is not a metric
    ref.write_text(json.dumps({'schema_version': 1, 'rsum': 500.05, 't2i': {'r1': 55.0},
                               'source': {'paper': 'X', 'table': 'Table 1'}}))
    assert diff.main([str(run), str(ref), '--atol', '0.1']) == 1
    out = capsys.readouterr().out
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[1:5]}
    assert rows == {'rsum': ['500.0', '500.05', 'ok'], 'i2t.r1': ['70.0', '<missing>', 'B', 'lacks'],
                    'i2t.r5': ['90.0', '<missing>', 'B', 'lacks'], 't2i.r1': ['<missing>', '55.0', 'A', 'lacks']}
    assert '%s (B) lacks 2 metric(s): i2t.r1, i2t.r5\n' % ref in out
    assert '%s (A) lacks 1 metric(s): t2i.r1\n' % run in out
    assert '4 compared, 3 differ' in out and 'source' not in out.replace(str(ref), '')


def test_diff_of_a_file_that_is_not_results_is_one_clear_error(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"rsum": ')
    proc = subprocess.run([sys.executable, '-m', 'common.diff', str(bad), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith('error: %s: not a results JSON' % bad)
    assert 'Traceback' not in proc.stderr
