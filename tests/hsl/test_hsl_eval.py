"""Evaluation equals upstream's evaluate() on the tiny reference data; main.py --eval_only end to end."""
import csv
import json
import os

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from hsl import main as hsl_main
from common.errors import InputError
from hsl.data import VOCAB_ALIASES, EvalDataset, eval_loader, load_vocab
from hsl.evaluation import evaluate
from hsl.evaluation_fast import evaluate as evaluate_fast
from hsl.metric import official_ndcg
from hsl.model import HSL


def upstream_scores(hh, cfg):
    with open(os.path.join(hh.DATA, 'upstream_scores_%s.csv' % cfg)) as f:
        return {(r['query_id'], int(r['product_id'])): float(r['score']) for r in csv.DictReader(f)}


def tiny_model_and_set(hh, tiny_root, cfg, extra=()):
    data = os.path.join(tiny_root, 'data')
    opt = hh.tiny_opt(cfg, ['--data_path', data, '--num_workers', '0'] + list(extra))
    vocab = load_vocab(os.path.join(data, 'KDDCup2020', 'kddcup_vocab.pkl'))
    if cfg == 'A':
        model = HSL(opt)
        model.load_state_dict(load_checkpoint(os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
                                              aliases=VOCAB_ALIASES)['model'])
    else:
        import torch
        torch.manual_seed(0)
        model = HSL(opt)
    return model, EvalDataset(opt, vocab, 'valid'), opt


@pytest.mark.parametrize('cfg', ['A', 'B'])
def test_fast_evaluation_equals_reference_and_upstream(cfg, hh, tiny, tiny_root, reference, tmp_path):
    model, val_set, opt = tiny_model_and_set(hh, tiny_root, cfg)
    answer = tiny['answer']
    want = upstream_scores(hh, cfg)
    fast = evaluate_fast(model, eval_loader(val_set), answer, out_path=str(tmp_path / 'fast.csv'), chunk=3)
    naive = evaluate(model, eval_loader(val_set), answer)
    for result in (fast, naive):
        assert result.num_queries == 4
        got = {(q, p): float(s) for q, pool in
               ((q, tiny_pool) for q, _, tiny_pool in tiny['queries'])
               for p, s in zip(pool, result.scores[q])}
        assert set(got) == set(want)
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6)
        # same float as upstream, bit for bit: the mean is summed in upstream's query order
        assert result.nDCG == float(reference[cfg + '_ndcg'])
    with open(tmp_path / 'fast.csv') as f:
        rows = list(csv.reader(f))
    with open(os.path.join(hh.DATA, 'upstream_scores_%s.csv' % cfg)) as f:
        upstream_rows = list(csv.reader(f))
    assert [r[:2] for r in rows] == [r[:2] for r in upstream_rows]  # header + upstream row order
    assert float(rows[1][2]) == fast.scores[rows[1][0]][0]  # full precision


def test_official_ndcg_counts_out_of_pool_answers(hh, tiny, tiny_root):
    model, val_set, _ = tiny_model_and_set(hh, tiny_root, 'A')
    result = evaluate_fast(model, eval_loader(val_set), tiny['answer'])
    official = official_ndcg(result.rankings, tiny['answer'])
    # query 102's answer holds product 99, absent from its pool: only the official IDCG counts it
    assert official < result.nDCG
    per_query = dict(result.per_query)
    ranked_q2 = result.rankings['102']
    pos14 = ranked_q2.index(14)
    q2_official = (1 / np.log2(pos14 + 2) if pos14 < 5 else 0) / (1 + 1 / np.log2(3))
    per_query['102'] = q2_official
    assert official == pytest.approx(np.mean(list(per_query.values())), rel=1e-12)


def test_main_eval_only_prints_upstream_line_and_writes_json(hh, tiny_root, reference, tmp_path, capsys):
    data = os.path.join(tiny_root, 'data')
    out_json, scores = str(tmp_path / 'res.json'), str(tmp_path / 'scores.csv')
    argv = ['--eval_only', '--resume', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
            '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--glove_path', str(tmp_path / 'no_glove_here.bin'), '--num_workers', '0',
            '--device', 'cpu', '--out_json', out_json, '--score_to', scores, '--ndcg_official'] \
        + hh.TINY_SIZES + hh.CONFIG_FLAGS['A']
    result = hsl_main.main(argv)
    out = capsys.readouterr().out
    want = float(reference['A_ndcg'])
    assert result.nDCG == want
    assert "nDCG score  %r\n" % want in out
    assert "=> loaded checkpoint '%s' (epoch 3, nDCG 0.5)" % argv[2] in out
    with open(out_json) as f:
        payload = json.load(f)
    assert payload['nDCG'] == result.nDCG and payload['num_queries'] == 4
    assert payload['nDCG_official'] < payload['nDCG'] and 'provenance' in payload
    assert os.path.getsize(scores) > 0


def test_missing_relevant_candidate_warns_and_counts_zero(hh, tiny, tiny_root, caplog):
    model, val_set, _ = tiny_model_and_set(hh, tiny_root, 'B')
    answer = dict(tiny['answer'], **{'103': [424242]})
    result = evaluate_fast(model, eval_loader(val_set), answer)
    assert result.per_query['103'] == 0.0
    assert any('103' in rec.getMessage() and 'no relevant product' in rec.getMessage()
               for rec in caplog.records)


def test_resuming_training_with_wrong_flags_is_a_clear_error(hh, tiny_root, tmp_path):
    data = os.path.join(tiny_root, 'data')
    argv = ['--logger_name', str(tmp_path / 'run'), '--resume',
            os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
            '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--num_workers', '0', '--device', 'cpu'] + hh.TINY_SIZES  # --glove forgotten
    with pytest.raises(InputError) as err:
        hsl_main.main(argv)
    assert 'repeat the training flags' in str(err.value) and '--glove' in str(err.value)


def readme_eval_argv(hh, data, *extra):
    """The README's bare testing command (no training flags), pointed at the tiny data."""
    return ['--eval_only', '--resume', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
            '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--glove_path', os.path.join(data, 'absent.bin'), '--num_workers', '0',
            '--device', 'cpu'] + list(extra)


def test_readme_eval_command_takes_model_options_from_the_checkpoint(hh, tiny_root, reference, capsys):
    data = os.path.join(tiny_root, 'data')
    result = hsl_main.main(readme_eval_argv(hh, data))
    assert result.nDCG == float(reference['A_ndcg'])
    out = capsys.readouterr().out
    taken = [line for line in out.splitlines() if line.startswith('=> model options from ')][0]
    for option in ("glove=True", "no_txtnorm=True", "score_agg='mean'", 'embed_size=12', 'img_dim=16'):
        assert option in taken


def test_explicit_flag_that_contradicts_the_checkpoint_is_a_clear_error(hh, tiny_root):
    data = os.path.join(tiny_root, 'data')
    with pytest.raises(InputError) as err:
        hsl_main.main(readme_eval_argv(hh, data, '--score_agg', 'max', '--embed_size', '12'))
    text = str(err.value)
    assert "--score_agg 'max' (checkpoint: 'mean')" in text and 'upstream_ckpt_glove.pth.tar' in text
    assert 'embed_size' not in text  # agrees with the checkpoint


def test_opt_from_checkpoint_rebuilds_the_model_without_training_flags(hh, tiny_root, reference, capsys):
    data = os.path.join(tiny_root, 'data')
    argv = ['--eval_only', '--opt_from_checkpoint', '--resume',
            os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'), '--data_path', data,
            '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--glove_path', os.path.join(data, 'absent.bin'), '--num_workers', '0', '--device', 'cpu']
    result = hsl_main.main(argv)  # README's bare eval command + --opt_from_checkpoint
    assert result.nDCG == float(reference['A_ndcg'])


def test_missing_parsed_files_are_a_clear_error(hh, tiny_root, tmp_path):
    data = os.path.join(tiny_root, 'data')
    argv = ['--test', '--data_path', str(tmp_path), '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--num_workers', '0', '--device', 'cpu'] + hh.TINY_SIZES
    with pytest.raises(InputError) as err:
        hsl_main.main(argv)
    assert 'valid.queries.pkl: file not found' in str(err.value) and 'parse_dataset.py' in str(err.value)


def test_main_eval_naive_flag_gives_the_same_number(hh, tiny_root, reference):
    data = os.path.join(tiny_root, 'data')
    argv = ['--test', '--eval_naive', '--resume', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
            '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--glove_path', os.path.join(data, 'absent.bin'), '--num_workers', '0', '--device', 'cpu'] \
        + hh.TINY_SIZES + hh.CONFIG_FLAGS['A']
    assert hsl_main.main(argv).nDCG == float(reference['A_ndcg'])
