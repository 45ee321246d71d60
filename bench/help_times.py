"""`--help` wall time of every entry script of the five papers and common/, next to `python -c pass`.

    .venv/bin/python bench/help_times.py [--repeat 3] [--match lhsc]

Entry scripts are the .py files under hsl lhsc m2hse avas fhn common with an
`if __name__ == '__main__'` block. Each runs as `python SCRIPT --help` (the fastest of --repeat runs,
interleaved with `python -c pass` so machine noise hits both); the last column lists the heavy
modules (torch, transformers, ...) that `--help` imported (they should be none).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ('hsl', 'lhsc', 'm2hse', 'avas', 'fhn', 'common')
HEAVY = ('torch', 'transformers', 'gensim', 'matplotlib', 'sklearn', 'pandas')
MAIN = re.compile(r'^if __name__ == [\'"]__main__[\'"]:', re.M)
# runs SCRIPT with argv [SCRIPT, --help] as __main__, then reports its exit code and the heavy modules loaded
PROBE = '''
import json, runpy, sys
script, heavy = sys.argv[1], sys.argv[2].split(',')
sys.argv = [script, '--help']
code = 0
try:
    runpy.run_path(script, run_name='__main__')
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
print('\\nHELP-PROBE ' + json.dumps({'code': code, 'heavy': sorted(m for m in heavy if m in sys.modules)}))
'''


def entry_scripts(repo=REPO):
    """Repo-relative paths of every entry script, sorted."""
    found = []
    for folder in FOLDERS:
        for root, dirs, files in os.walk(os.path.join(repo, folder)):
            dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__')) and d != 'node_modules')
            for name in sorted(files):
                path = os.path.join(root, name)
                if name.endswith('.py') and MAIN.search(open(path, encoding='utf-8').read()):
                    found.append(os.path.relpath(path, repo))
    return found


def probe_help(script, cwd, timeout=120):
    """(exit code, heavy modules imported, output) of `SCRIPT --help` run through PROBE."""
    proc = subprocess.run([sys.executable, '-c', PROBE, os.path.join(REPO, script), ','.join(HEAVY)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO))
    marker = [line for line in proc.stdout.splitlines() if line.startswith('HELP-PROBE ')]
    if not marker:
        return proc.returncode or 1, [], proc.stdout + proc.stderr
    result = json.loads(marker[-1][len('HELP-PROBE '):])
    return result['code'], result['heavy'], proc.stdout + proc.stderr


def wall(cmd, cwd):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeat', type=int, default=3, help='runs per script; the fastest is shown')
    parser.add_argument('--match', default='', help='only scripts whose path contains this')
    args = parser.parse_args(argv)
    scripts = [s for s in entry_scripts() if args.match in s]
    baseline, rows = [], []
    for script in scripts:
        times = []
        for _ in range(args.repeat):
            baseline.append(wall([sys.executable, '-c', 'pass'], REPO))
            times.append(wall([sys.executable, os.path.join(REPO, script), '--help'], REPO))
        code, heavy, _ = probe_help(script, REPO)
        rows.append((script, min(times), code, heavy))
    base = min(baseline) if baseline else wall([sys.executable, '-c', 'pass'], REPO)
    width = max([len('script')] + [len(r[0]) for r in rows])
    print('%-*s  %8s  %8s  %4s  %s' % (width, 'script', '--help s', 'minus -c', 'exit', 'heavy modules imported'))
    print('%-*s  %8.2f  %8s  %4s  %s' % (width, 'python -c pass', base, '', '', ''))
    for script, seconds, code, heavy in rows:
        print('%-*s  %8.2f  %8.2f  %4s  %s' % (width, script, seconds, seconds - base, code, ', '.join(heavy) or '-'))
    slow = [r[0] for r in rows if r[1] >= 1.5]
    print('%d scripts; %d take 1.5 s or more: %s' % (len(rows), len(slow), ', '.join(slow) or 'none'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
