"""`make demo`: run every paper folder's demo (`<paper>/demo.py --out_dir runs/demo/<paper>`),
draw each paper's training curves (`<paper>/curves.png`, from its TensorBoard event files), then
print one summary table and write it to runs/demo/summary.{md,json}; the table links the curves
and the pictures the demos drew (retrieval galleries, outfit grids).

    python -m common.demo [--papers hsl lhsc ...] [--out_dir runs/demo]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from typing import NamedTuple

from common.atomic import atomic_open
from common.errors import InputError

PAPERS = ('hsl', 'lhsc', 'm2hse', 'avas', 'fhn')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Step(NamedTuple):
    command: str   # as shown: `python <repo-relative script> args...`
    wall_s: float
    output: str    # stdout and stderr together


def shown_command(cmd):
    """`python hsl/main.py ...` for [sys.executable, /repo/hsl/main.py, ...] (the script relative to the repo)."""
    words = list(cmd)
    if words and words[0] == sys.executable:
        words[0] = 'python'
        if len(words) > 1 and os.path.isabs(words[1]) and words[1].startswith(REPO + os.sep):
            words[1] = os.path.relpath(words[1], REPO)
    return ' '.join(shlex.quote(w) for w in words)


def _is_redraw(line):
    return '\r' in line or 'it/s]' in line or 'B/s]' in line or 's/it]' in line


def run_step(cmd, cwd, log=None, env=None):
    """Run one demo step; print `$ command`; its output is appended to the file `log` (after a
    `$ command` line) or, without a log, printed indented (progress-bar redraws dropped).
    A failing step raises SystemExit with the command and the tail of its output."""
    command = shown_command(cmd)
    print('$ ' + command, flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors='replace')
    wall = time.time() - start
    if log is not None:
        with open(log, 'a', encoding='utf-8') as f:
            f.write('$ %s\n%s' % (command, proc.stdout))
    else:
        for line in proc.stdout.splitlines():
            if not _is_redraw(line):
                print('    ' + line, flush=True)
    if proc.returncode != 0:
        raise SystemExit('demo step failed (exit %d): %s\n%s' % (proc.returncode, command, proc.stdout[-3000:]))
    return Step(command, wall, proc.stdout)


def run_paper_demo(paper, out_dir, timeout):
    """Run one paper's demo; return its summary rows (a failure becomes one 'FAILED' row)."""
    script = os.path.join(REPO, paper, 'demo.py')
    if not os.path.isfile(script):
        return [{'paper': paper, 'command': '-', 'metric': 'no demo yet', 'value': None,
                 'baseline': None, 'wall_s': 0.0, 'status': 'missing'}]
    paper_dir = os.path.join(out_dir, paper)
    os.makedirs(paper_dir, exist_ok=True)
    summary = os.path.join(paper_dir, 'summary.json')
    if os.path.exists(summary):
        os.remove(summary)
    print('=== %s: python %s/demo.py --out_dir %s' % (paper, paper, paper_dir), flush=True)
    start = time.time()
    try:
        code = subprocess.run([sys.executable, script, '--out_dir', paper_dir], cwd=REPO,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        code = 'timeout after %ds' % timeout
    wall = time.time() - start
    if code != 0 or not os.path.isfile(summary):
        return [{'paper': paper, 'command': 'python %s/demo.py' % paper, 'metric': 'FAILED (%s)' % code,
                 'value': None, 'baseline': None, 'wall_s': round(wall, 1), 'status': 'failed'}]
    with open(summary, encoding='utf-8') as f:
        rows = json.load(f)
    for row in rows:
        row.setdefault('paper', paper)
        row.setdefault('wall_s', round(wall, 1))
        row['status'] = 'ok'
        # links in a paper's summary are relative to its out_dir; ours are relative to the demo root
        row['links'] = {name: '%s/%s' % (paper, path) for name, path in (row.get('links') or {}).items()}
    if draw_curves(paper, paper_dir) and rows:
        rows[0]['links'] = dict({'curves': '%s/curves.png' % paper}, **rows[0]['links'])
    return rows


def draw_curves(paper, paper_dir):
    """<paper_dir>/curves.png from the event files under paper_dir; False (with a note) when there are none."""
    from common.plot import plot_runs  # matplotlib and tensorboard only once a demo has run
    try:
        tags = plot_runs([paper_dir], os.path.join(paper_dir, 'curves.png'), title='%s demo' % paper)
    except InputError as err:
        print('no curves for %s: %s' % (paper, err), flush=True)
        return False
    print('curves: %s (%s)' % (os.path.join(paper_dir, 'curves.png'), ', '.join(tags)), flush=True)
    return True


def _cell(value):
    if value is None:
        return '-'
    if isinstance(value, float):
        return '%.4f' % value
    return str(value).replace('|', '\\|')


def markdown_table(rows):
    head = ['paper', 'command run', 'metric', 'value', 'random baseline', 'wall time (s)', 'pictures']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r.get('paper'), '`%s`' % r.get('command') if r.get('command') not in (None, '-') else '-',
                 r.get('metric'), r.get('value'), r.get('baseline'),
                 None if r.get('wall_s') is None else '%.1f' % r['wall_s']]
        cells = [_cell(c) for c in cells]
        cells.append(' '.join('[%s](%s)' % (name, path) for name, path in (r.get('links') or {}).items()) or '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--papers', nargs='+', default=list(PAPERS), choices=PAPERS)
    parser.add_argument('--out_dir', default=os.path.join(REPO, 'runs', 'demo'))
    parser.add_argument('--timeout', type=int, default=600, help='seconds allowed per paper demo')
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    for paper in args.papers:
        rows.extend(run_paper_demo(paper, os.path.abspath(args.out_dir), args.timeout))
    table = markdown_table(rows)
    print('\n' + table)
    with atomic_open(os.path.join(args.out_dir, 'summary.md'), 'w') as f:
        f.write(table)
    with atomic_open(os.path.join(args.out_dir, 'summary.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    missing = [r['paper'] for r in rows if r['status'] == 'missing']
    if missing:
        print('no demo yet in: %s' % ', '.join(missing))
    failed = sorted({r['paper'] for r in rows if r['status'] == 'failed'})
    if failed:
        print('demo FAILED for: %s' % ', '.join(failed))
        return 1
    pictures = [path for r in rows for path in (r.get('links') or {}).values() if path.endswith('.png')]
    if pictures:
        print('pictures (under %s): %s' % (args.out_dir, ', '.join(pictures)))
    print('summary written to %s/summary.{md,json}' % args.out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
