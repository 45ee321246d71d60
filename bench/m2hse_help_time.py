"""Wall time of `--help` of every m2hse entry script next to `python -c pass` (best of --repeat runs).

    python bench/m2hse_help_time.py [--repeat 3]
"""
import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['train_global.py', 'train_local.py', 'test_global.py', 'test_local.py', 'predict.py', 'fuse.py',
           'vocab.py', 'make_demo_data.py', 'extract_features.py', 'demo.py']


def best_time(cmd, repeat):
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args(argv)
    base = best_time([sys.executable, '-c', 'pass'], args.repeat)
    print('%-30s %8s %8s' % ('command', 'best s', '- pass'))
    print('%-30s %8.3f %8s' % ('python -c pass', base, ''))
    for script in SCRIPTS:
        t = best_time([sys.executable, os.path.join(REPO, 'm2hse', script), '--help'], args.repeat)
        print('%-30s %8.3f %8.3f' % (script + ' --help', t, t - base))


if __name__ == '__main__':
    main()
