"""`--help` wall time of every avas entry script next to `python -c pass` (median of --repeat runs,
interleaved so machine noise hits all alike). The scripts parse before importing torch.

    python bench/avas_help_bench.py [--repeat 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['align_recall_test_with_mmkg_model.py', 'align_recall@K.py', 'local_eval_test.py', 'train_align.py',
           'train_ranking.py', 'predict.py', 'poi_tables.py', 'download_images.py', 'demo.py',
           'avas_page/align_model_test_with_mkg.py', 'avas_page/visualization_csv.py']


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeat', default=5, type=int)
    args = p.parse_args(argv)
    commands = {'python -c pass': [sys.executable, '-c', 'pass']}
    commands.update({s + ' --help': [sys.executable, os.path.join(REPO, 'avas', s), '--help'] for s in SCRIPTS})
    times = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    for name in commands:
        print('%-55s %.3f s' % (name, statistics.median(times[name])))
    return times


if __name__ == '__main__':
    main()
