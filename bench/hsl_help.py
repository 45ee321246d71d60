"""Time `--help` of every HSL entry script next to `python -c pass` (median of a few runs).

    python bench/hsl_help.py [--runs 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('main.py', 'parse_dataset.py', 'predict.py', 'demo.py', 'make_demo_data.py')


def wall(cmd, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=5)
    args = ap.parse_args()
    rows = [('python -c pass', wall([sys.executable, '-c', 'pass'], args.runs))]
    for script in SCRIPTS:
        rows.append(('hsl/%s --help' % script, wall([sys.executable, os.path.join('hsl', script), '--help'], args.runs)))
    print('%-32s %8s' % ('command', 'wall s'))
    for name, seconds in rows:
        print('%-32s %8.3f' % (name, seconds))


if __name__ == '__main__':
    main()
