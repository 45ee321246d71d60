"""common.atomic: atomic writes, and the one kill -9 test hook every paper's fault tests use."""
import os
import signal
import subprocess
import sys

import pytest

from common.atomic import PAUSE_ENV, PAUSE_MESSAGE, atomic_copy, atomic_open

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRITER = '''
import sys
from common.atomic import atomic_open
for i, name in enumerate(sys.argv[1:]):
    with atomic_open(name, "w") as f:
        f.write("write %d" % (i + 1))
    print("wrote", name, flush=True)
'''


def write_files(tmp_path, hook, *names):
    """Run WRITER on names with the hook set; kill -9 it once it says it paused. -> (stdout, paused)."""
    env = dict(os.environ, PYTHONPATH=REPO, **{PAUSE_ENV: hook})
    proc = subprocess.Popen([sys.executable, '-c', WRITER] + list(names), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    paused = False
    for line in proc.stderr:
        if PAUSE_MESSAGE in line:
            paused = True
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    return proc.stdout.read(), paused


def test_atomic_open_writes_and_leaves_no_temp_file(tmp_path):
    with atomic_open(tmp_path / 'a.txt', 'w') as f:
        f.write('hello')
    assert (tmp_path / 'a.txt').read_text() == 'hello'
    assert os.listdir(tmp_path) == ['a.txt']


def test_an_error_inside_the_write_keeps_the_old_file(tmp_path):
    (tmp_path / 'a.txt').write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / 'a.txt', 'w') as f:
            f.write('half')
            raise RuntimeError('stop')
    assert os.listdir(tmp_path) == ['a.txt'] and (tmp_path / 'a.txt').read_text() == 'old'


def test_hook_pauses_the_named_file_and_a_kill_keeps_the_old_one(tmp_path):
    (tmp_path / 'ckpt').write_text('old')
    out, paused = write_files(tmp_path, 'ckpt', 'other', 'ckpt', 'after')
    assert paused
    assert out.split('\n')[:1] == ['wrote other']          # other names are written normally
    assert (tmp_path / 'ckpt').read_text() == 'old'          # killed before the rename: old file whole
    assert not (tmp_path / 'after').exists()
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith('.ckpt.') and n.endswith('.tmp')]
    assert len(leftovers) == 1 and (tmp_path / leftovers[0]).read_text() == 'write 2'  # data written in full


def test_hook_counts_writes_of_the_name(tmp_path):
    out, paused = write_files(tmp_path, 'ckpt@2', 'ckpt', 'ckpt')
    assert paused and out == 'wrote ckpt\n'
    assert (tmp_path / 'ckpt').read_text() == 'write 1'    # the first write went through, the second paused


def test_no_pause_without_a_matching_name(tmp_path):
    out, paused = write_files(tmp_path, 'elsewhere', 'ckpt')
    assert not paused and out == 'wrote ckpt\n' and (tmp_path / 'ckpt').read_text() == 'write 1'


def test_atomic_copy_copies_bytes(tmp_path):
    (tmp_path / 'src').write_bytes(bytes(range(256)) * 5000)
    atomic_copy(tmp_path / 'src', tmp_path / 'dst', chunk=1000)
    assert (tmp_path / 'dst').read_bytes() == (tmp_path / 'src').read_bytes()
