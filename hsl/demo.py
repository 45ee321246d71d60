"""`make demo` for HSL: synthetic KDD-Cup-format data -> parse_dataset.py -> main.py (train a few
epochs on CPU with the README flags) -> main.py --eval_only --resume (the README's testing
command, no training flags); writes OUT_DIR/summary.json.

The real scripts run as subprocesses from OUT_DIR/code, so upstream's relative default paths
(../data/KDDCup2020, ../data/glove_model.bin, ../data/kddcup/valid/valid_answer.json) are used as is.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
import time

from common.demo import run_step
from common.errors import cli_main
from common.safeio import write_json_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
# small widths so a few CPU epochs suffice; the README training flags are kept
SIZES = ['--d_model', '64', '--word_dim', '64', '--embed_size', '64', '--HIDDEN_SIZE', '64',
         '--FLAT_MLP_SIZE', '64', '--FLAT_OUT_SIZE', '64']
README_FLAGS = ['--use_dup', '--no_txtnorm', '--glove', '--score_agg', 'mean']
RUN_FLAGS = ['--num_workers', '0', '--device', 'cpu', '--seed', '0']


def run(args, cwd, env):
    """Run an HSL script by path from `cwd`; returns (wall seconds, `python hsl/<script>.py ...`)."""
    step = run_step([sys.executable] + args, cwd, env=env)
    return step.wall_s, step.command


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out_dir', required=True)
    parser.add_argument('--epochs', default=4, type=int)
    parser.add_argument('--learning_rate', default='0.0005')
    opt = parser.parse_args(argv)
    out = os.path.abspath(opt.out_dir)
    code = os.path.join(out, 'code')
    os.makedirs(code, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    start = time.time()

    run([os.path.join(HERE, 'make_demo_data.py'), '--out_dir', '../data', '--train_rows', '400'], code, env)
    run([os.path.join(HERE, 'parse_dataset.py'), '--no_progress', '--rebuild_vocab'], code, env)
    train_args = ['--logger_name', 'runs/KddCup2020'] + README_FLAGS + SIZES + RUN_FLAGS + [
        '--num_epochs', str(opt.epochs), '--batch_size', '32', '--learning_rate', opt.learning_rate,
        '--log_step', '5']
    run([os.path.join(HERE, 'main.py')] + train_args, code, env)
    result_json = os.path.join(out, 'eval.json')
    # the README's testing command as written: the model options come from the checkpoint
    _, command = run([os.path.join(HERE, 'main.py'), '--eval_only', '--resume',
                      'runs/KddCup2020/model_best.pth.tar'] + RUN_FLAGS +
                     ['--ndcg_official', '--out_json', result_json,
                      '--score_to', os.path.join(out, 'valid_scores.csv')], code, env)
    with open(result_json) as f:
        metrics = json.load(f)
    wall = time.time() - start
    rows = [{'paper': 'hsl', 'command': command, 'metric': 'NDCG@5 (valid, upstream convention)',
             'value': metrics['nDCG'], 'baseline': metrics['nDCG_random'], 'wall_s': round(wall, 1)},
            {'paper': 'hsl', 'command': command, 'metric': 'NDCG@5 (official Tianchi formula)',
             'value': metrics['nDCG_official'], 'baseline': metrics['nDCG_random'],
             'wall_s': round(wall, 1)}]
    write_json_atomic(os.path.join(out, 'summary.json'), rows)
    print('NDCG@5 %.4f vs random ranking %.4f (%d queries) in %.0f s'
          % (metrics['nDCG'], metrics['nDCG_random'], metrics['num_queries'], wall))
    if not metrics['nDCG'] > metrics['nDCG_random'] + 0.1:
        raise SystemExit('demo failed: NDCG@5 is not clearly above the random-ranking value')


if __name__ == '__main__':
    cli_main(main)
