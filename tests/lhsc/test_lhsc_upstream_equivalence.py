"""Evaluating checkpoints saved in the original (torch 0.4.1 / py2, CUDA storage) format gives the
similarity matrix, R@K and printed lines of the original code, run (py3-patched only where it
crashed) on the same tiny data: tests/lhsc/data/upstream/*_test_{sims.npy,stdout.txt}."""
import contextlib
import io
import json
import os

import numpy as np
import pytest

from lhsc import evaluation

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')


def run_eval(tmp_path, name, *extra):
    out_json, out_scores = tmp_path / 'r.json', tmp_path / 's.npy'
    argv = ['--model_path', os.path.join(UPSTREAM, name + '_legacy.pth.tar'), '--data_path', DATA,
            '--vocab_path', VOCAB, '--split', 'test', '--device', 'cpu',
            '--out_json', str(out_json), '--out_scores', str(out_scores)] + list(extra)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        evaluation.main(argv)
    return json.load(open(out_json)), np.load(out_scores), buf.getvalue()


def result_lines(text):
    keep = ('rsum', 'Average', 'Image to text', 'Text to image', 'Images:', '=> loaded', 'Loading', 'Computing')
    return [line for line in text.replace('\r', '\n').splitlines() if line.startswith(keep)]


@pytest.mark.parametrize('name', ['lhsc', 'sgraf_saf', 'sgraf_sgr'])
def test_legacy_checkpoint_eval_matches_upstream(tmp_path, name):
    metrics, sims, stdout = run_eval(tmp_path, name)
    reference = np.load(os.path.join(UPSTREAM, name + '_test_sims.npy'))
    assert sims.dtype == np.float64 and sims.shape == reference.shape == (30, 150)
    assert np.abs(sims - reference).max() <= 1e-5
    upstream_stdout = open(os.path.join(UPSTREAM, name + '_test_stdout.txt')).read()
    assert result_lines(stdout) == result_lines(upstream_stdout)
    # JSON numbers are the ones upstream printed
    printed = [line for line in result_lines(upstream_stdout) if line.startswith('Image to text')][0]
    i2t = [float(x) for x in printed.split(':')[1].split()]
    assert [round(metrics['i2t'][k], 1) for k in ('r1', 'r5', 'r10', 'medr', 'meanr')] == i2t
    assert metrics['n_images'] == 30 and metrics['n_captions'] == 150
    assert metrics['rsum'] == pytest.approx(sum(metrics[d][k] for d in ('i2t', 't2i') for k in ('r1', 'r5', 'r10')))
    assert metrics['ar'] == pytest.approx((metrics['i2t']['r1'] + metrics['i2t']['r5'] + metrics['i2t']['r10']) / 3)


def test_reference_loop_cli_matches_upstream_too(tmp_path):
    _, sims, _ = run_eval(tmp_path, 'sgraf_sgr', '--reference', '--shard_size', '7')
    assert np.abs(sims - np.load(os.path.join(UPSTREAM, 'sgraf_sgr_test_sims.npy'))).max() <= 1e-5


def test_tiny_memory_budget_and_shards_give_same_matrix(tmp_path):
    _, sims, _ = run_eval(tmp_path, 'lhsc', '--shard_size', '1', '--max_mem', '0.0001')
    assert np.abs(sims - np.load(os.path.join(UPSTREAM, 'lhsc_test_sims.npy'))).max() <= 1e-5


def test_ensemble_averages_two_models(tmp_path):
    out_scores = tmp_path / 'e.npy'
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        metrics = evaluation.main(['--ensemble', os.path.join(UPSTREAM, 'sgraf_saf_legacy.pth.tar'),
                                   os.path.join(UPSTREAM, 'sgraf_sgr_legacy.pth.tar'), '--data_path', DATA,
                                   '--vocab_path', VOCAB, '--device', 'cpu', '--out_scores', str(out_scores)])
    expected = (np.load(os.path.join(UPSTREAM, 'sgraf_saf_test_sims.npy'))
                + np.load(os.path.join(UPSTREAM, 'sgraf_sgr_test_sims.npy'))) / 2
    assert np.abs(np.load(out_scores) - expected).max() <= 1e-5
    reference = evaluation.retrieval_metrics(expected)
    for key in ('i2t', 't2i'):
        assert metrics[key] == pytest.approx(reference[key])
    assert metrics['rsum'] == pytest.approx(reference['rsum'])
