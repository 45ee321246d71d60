"""common.logs: timestamped log lines on stdout (setup is idempotent) and the sorted configuration print."""
import argparse
import io
import re
import subprocess
import sys
import textwrap

from common.logs import print_config

SCRIPT = textwrap.dedent('''
    import logging
    from common.logs import setup_logging
    setup_logging()
    setup_logging()  # twice: still one handler, one line per message
    logging.getLogger('m2hse').info('epoch 1 loss 0.5')
    logging.getLogger('x').debug('hidden at INFO')
    setup_logging(logging.DEBUG)
    logging.getLogger('x').debug('shown at DEBUG')
''')


def test_log_lines_are_timestamped_on_stdout_once():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ''
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    stamp = r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} '
    assert re.fullmatch(stamp + 'epoch 1 loss 0.5', lines[0])
    assert re.fullmatch(stamp + 'shown at DEBUG', lines[1])


def test_print_config_sorted_one_per_line_from_namespace_or_dict():
    out = io.StringIO()
    print_config(argparse.Namespace(lr=0.0002, data_path='data', batch_size=128, amp=False), out=out)
    assert out.getvalue() == "config:\n  amp: False\n  batch_size: 128\n  data_path: 'data'\n  lr: 0.0002\n"
    out = io.StringIO()
    print_config({'b': [1, 2], 'a': None}, title='test flags', out=out)
    assert out.getvalue() == 'test flags:\n  a: None\n  b: [1, 2]\n'
