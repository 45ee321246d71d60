"""common.errors.cli_main: input faults end as one `error:` line and exit 2; bugs keep their traceback;
--debug / XMODAL_DEBUG=1 keep it for input faults too."""
import subprocess
import sys
import textwrap

import pytest

from common.errors import EXIT_INPUT, InputError, cli_main

SCRIPT = textwrap.dedent('''
    import sys
    from common.errors import InputError, cli_main
    from common.safeio import NonFiniteError
    def main():
        kind = sys.argv[1]
        if kind == 'input':
            raise InputError('data/x.csv:3: bad row; fix it')
        if kind == 'nonfinite':
            raise NonFiniteError('non-finite loss (nan) at epoch 1 step 2')
        if kind == 'checkpoint':
            from common.checkpoint import CheckpointError
            raise CheckpointError('m.pth: not a checkpoint')
        if kind == 'bug':
            return {}['missing']
        if kind == 'code':
            return 4
        if kind == 'argv':
            print(sys.argv[1:])
    cli_main(main)
''')


def _run(tmp_path, *args, env=None):
    script = tmp_path / 'entry.py'
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script)] + list(args), capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize('kind, message', [
    ('input', 'error: data/x.csv:3: bad row; fix it\n'),
    ('nonfinite', 'error: non-finite loss (nan) at epoch 1 step 2\n'),
    ('checkpoint', 'error: m.pth: not a checkpoint\n'),
])
def test_input_faults_are_one_line_and_exit_2(tmp_path, kind, message):
    proc = _run(tmp_path, kind)
    assert proc.returncode == EXIT_INPUT == 2
    assert proc.stderr == message and proc.stdout == ''


def test_bugs_keep_their_traceback(tmp_path):
    proc = _run(tmp_path, 'bug')
    assert proc.returncode == 1
    assert 'Traceback' in proc.stderr and "KeyError: 'missing'" in proc.stderr


def test_debug_flag_and_env_keep_the_traceback_and_debug_is_removed_from_argv(tmp_path):
    import os
    proc = _run(tmp_path, 'input', '--debug')
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'InputError: data/x.csv:3' in proc.stderr
    proc = _run(tmp_path, 'input', env=dict(os.environ, XMODAL_DEBUG='1'))
    assert proc.returncode == 1 and 'Traceback' in proc.stderr
    proc = _run(tmp_path, 'input', env=dict(os.environ, XMODAL_DEBUG='0'))
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    proc = _run(tmp_path, 'argv', '--debug', 'x')
    assert proc.returncode == 0 and proc.stdout == "['argv', 'x']\n"


def test_return_value_is_the_exit_code(tmp_path):
    assert _run(tmp_path, 'code').returncode == 4
    assert _run(tmp_path, 'argv').returncode == 0


def test_in_process_exit_codes():
    def fails():
        raise InputError('f.txt: empty; give a non-empty file')
    with pytest.raises(SystemExit) as info:
        cli_main(fails, argv=['prog'])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli_main(lambda: None, argv=['prog'])
    assert info.value.code == 0

    def interrupted():
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as info:
        cli_main(interrupted, argv=['prog'])
    assert info.value.code == 130
