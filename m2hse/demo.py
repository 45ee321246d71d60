"""End-to-end demo on CPU: synthetic Corel5K-aligned features -> train global and local (README
commands, shortened) -> test both -> fuse -> a retrieval gallery of the local model. Writes
OUT_DIR/summary.json (one row per number; the local row links gallery/gallery.html and .png).

    python m2hse/demo.py --out_dir /tmp/m2hse_demo
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import importlib.util
import json
import time

from common.demo import run_step
from common.errors import cli_main
from common.safeio import check_writable_dir, write_json_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
GALLERY_QUERY = 'sky sun clouds'  # the README's predict example
SMALL = ['--embed_size', '64', '--word_dim', '64', '--cnn_dim', '256', '--bovw_dim', '100',
         '--learning_rate', '.002', '--seed', '0', '--device', 'cpu', '--log_step', '4']


def readme_train_command(level):
    """The README training command (run from inside the data folder), with a short schedule appended."""
    if level == 'global':
        grain, name, weights, epochs = 'coarse', 'Global', ['--alpha_1', '.8', '--alpha_2', '.8'], '4'
    else:
        grain, name, weights, epochs = 'fine', 'Local', ['--beta_1', '.4', '--beta_2', '.4'], '3'
    ckpt = './checkpoint/M2HSE/%s/Corel5K' % name
    return (['train_%s.py' % level, '--data_path', './data/%s-grained-data' % grain,
             '--data_name', 'corel5k_precomp', '--vocab_path', './vocab', '--logger_name', ckpt,
             '--model_name', ckpt, '--num_epochs', '100', '--lr_updata', '50', '--batchsize', '100',
             '--gamma_1', '1', '--gamma_2', '.5'] + weights + ['--num_epochs', epochs] + SMALL)


def run(args, cwd, log):
    """Run one of our entry scripts by path (output into the log); show its last mAP/loss lines."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')  # tiny models: 1 thread is fastest
    step = run_step([sys.executable, os.path.join(HERE, args[0])] + args[1:], cwd, log=log, env=env)
    lines = [ln for ln in step.output.splitlines() if 'mAP' in ln or 'loss:' in ln]
    for line in lines[-4:]:
        print('    ' + line)
    return step.command, step.wall_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out_dir', required=True)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    check_writable_dir(out, '--out_dir')
    rows = []
    t0 = time.time()
    log = os.path.join(out, 'demo.log')
    open(log, 'w').close()  # each step appends to it
    run(['make_demo_data.py', '--out_dir', out, '--cnn_dim', '256', '--bovw_dim', '100',
         '--n_train', '800', '--n_dev', '200'], out, log)
    for level in ('global', 'local'):
        train_cmd, train_s = run(readme_train_command(level), out, log)
        grain, name = ('coarse', 'Global') if level == 'global' else ('fine', 'Local')
        test_cmd, test_s = run(['test_%s.py' % level, '--data_path', './data/%s-grained-data' % grain,
                                '--model_path', './checkpoint/M2HSE/%s/Corel5K/model_best.pth.tar' % name,
                                '--split', 'test', '--device', 'cpu', '--out_json', '%s.json' % level,
                                '--out_scores', '%s_scores.npy' % level], out, log)
        metrics = json.load(open(os.path.join(out, '%s.json' % level)))
        rows.append({'paper': 'm2hse', 'command': train_cmd + ' && ' + test_cmd,
                     'metric': '%s mAP_sum (test)' % level, 'value': metrics['mAP_sum'],
                     'wall_s': train_s + test_s})
    labels = './data/coarse-grained-data/corel5k_precomp/test_labels.npy'
    fuse_cmd, fuse_s = run(['fuse.py', '--global_scores', 'global_scores.npy', '--local_scores',
                            'local_scores.npy', '--labels', labels, '--weight', '.5',
                            '--out_json', 'fused.json'], out, log)
    if importlib.util.find_spec('common.gallery') is not None:
        run(['predict.py', '--checkpoint', './checkpoint/M2HSE/Local/Corel5K/model_best.pth.tar',
             '--data_path', './data/fine-grained-data', '--query', GALLERY_QUERY, '--image_index', '0',
             '--top_k', '5', '--gallery', 'gallery', '--device', 'cpu'], out, log)
        rows[1]['links'] = {'gallery': 'gallery/gallery.html', 'gallery_png': 'gallery/gallery.png'}
    else:
        print('common.gallery is not available: no retrieval gallery drawn')
    fused = json.load(open(os.path.join(out, 'fused.json')))
    rows.append({'paper': 'm2hse', 'command': fuse_cmd, 'metric': 'fused mAP_sum (test)',
                 'value': fused['mAP_sum'], 'wall_s': fuse_s})
    for row in rows:
        row['baseline'] = fused['random_mAP_sum']
    write_json_atomic(os.path.join(out, 'summary.json'), rows)
    print('\nrandom-score mAP_sum: %.4f' % fused['random_mAP_sum'])
    for row in rows:
        print('%-26s %.4f' % (row['metric'], row['value']))
    print('total %.1f s; summary in %s' % (time.time() - t0, os.path.join(out, 'summary.json')))
    worst = min(row['value'] for row in rows)
    if not worst > 1.5 * fused['random_mAP_sum']:
        raise SystemExit('demo finished but mAP_sum %.4f is not clearly above the random %.4f'
                         % (worst, fused['random_mAP_sum']))
    return rows


if __name__ == '__main__':
    cli_main(main)
