"""common.progress: a tqdm bar with rate and ETA on stderr where someone can watch it (a terminal,
rank 0, not --no_progress); XMODAL_PROGRESS=1/0 forces it on/off; printed lines stay."""
import argparse
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap

import pytest

from common.progress import add_progress_arg, progress, progress_enabled

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOOP = textwrap.dedent('''
    import argparse, time
    from common.progress import add_progress_arg, progress
    args = add_progress_arg(argparse.ArgumentParser()).parse_args()
    total = 0
    for i in progress(range(40), desc='encode', enabled=not args.no_progress, mininterval=0):
        time.sleep(0.01)
        total += i
    print('sum', total, flush=True)
''')
BAR = re.compile(r'encode: +\d+%\|[^|]*\| *(\d+)/40 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(it/s|s/it)\]')


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ('XMODAL_PROGRESS', 'RANK')}
    env.update(extra, PYTHONPATH=REPO)
    return env


def _run_pipe(*args, **env):
    return subprocess.run([sys.executable, '-c', LOOP] + list(args), capture_output=True, text=True,
                          env=_env(**env), timeout=120)


def _run_pty(*args, columns=100, **env):
    """Run the loop with stderr on a real pseudo-terminal; returns (stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, '-c', LOOP] + list(args), stdout=subprocess.PIPE, stderr=slave,
                            env=_env(**env), text=True)
    os.close(slave)
    seen = b''
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = proc.communicate(timeout=60)[0]
    os.close(master)
    assert proc.returncode == 0
    return out, seen.decode('utf-8', 'replace')


@pytest.mark.parametrize('columns', [100, 0])  # 0: a terminal that reports no size still gets a bar
def test_bar_with_rate_and_eta_on_a_real_terminal(columns):
    out, term = _run_pty(columns=columns)
    assert out == 'sum 780\n'  # the loop's own printed lines stay
    counts = [int(m.group(1)) for m in BAR.finditer(term)]
    assert counts and counts[-1] == 40 and len(set(counts)) > 2  # redrawn as it goes, ends at 40/40


def test_forced_on_by_env_without_a_terminal():
    proc = _run_pipe(XMODAL_PROGRESS='1')
    assert proc.stdout == 'sum 780\n'
    assert [int(m.group(1)) for m in BAR.finditer(proc.stderr)][-1] == 40


@pytest.mark.parametrize('args, env', [
    ([], {}),                                  # not a terminal
    (['--no_progress'], {'XMODAL_PROGRESS': '1'}),
    ([], {'XMODAL_PROGRESS': '1', 'RANK': '1'}),
])
def test_no_bar_without_terminal_with_no_progress_or_off_rank0(args, env):
    proc = _run_pipe(*args, **env)
    assert proc.returncode == 0 and proc.stdout == 'sum 780\n' and proc.stderr == ''


@pytest.mark.parametrize('args, env', [
    (['--no_progress'], {}),
    ([], {'RANK': '1'}),
    ([], {'XMODAL_PROGRESS': '0'}),
])
def test_no_bar_on_a_terminal_when_disabled(args, env):
    out, term = _run_pty(*args, **env)
    assert out == 'sum 780\n' and 'encode' not in term


def test_progress_enabled_rules(monkeypatch):
    class Tty:
        def isatty(self):
            return True
    monkeypatch.delenv('XMODAL_PROGRESS', raising=False)
    monkeypatch.delenv('RANK', raising=False)
    assert progress_enabled(True, Tty()) and not progress_enabled(False, Tty())
    assert not progress_enabled(True, object())
    monkeypatch.setenv('RANK', '0')
    assert progress_enabled(True, Tty())
    monkeypatch.setenv('RANK', '2')
    assert not progress_enabled(True, Tty())
    parser = add_progress_arg(argparse.ArgumentParser())
    assert parser.parse_args(['--no_progress']).no_progress and not parser.parse_args([]).no_progress
    assert list(progress(range(3), enabled=False)) == [0, 1, 2]
