"""Timestamped log lines and the resolved configuration printed at the start of every run."""
import argparse
import logging
import sys

FORMAT = '%(asctime)s %(message)s'


def setup_logging(level=logging.INFO):
    """Timestamped `logging` lines on stdout; calling it again changes nothing."""
    root = logging.getLogger()
    if not any(getattr(h, '_xmodal', False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._xmodal = True
        root.addHandler(handler)
    root.setLevel(level)
    return root


def print_config(opt, title='config', out=None):
    """Print every resolved option, sorted, one `name: value` a line."""
    out = sys.stdout if out is None else out
    items = vars(opt) if isinstance(opt, argparse.Namespace) else dict(opt)
    print('%s:' % title, file=out)
    for name in sorted(items):
        print('  %s: %r' % (name, items[name]), file=out)
    out.flush()
