"""tqdm progress bars that show only where someone can watch: a TTY, rank 0, not --no_progress."""
import os
import sys

from tqdm import tqdm


def add_progress_arg(parser):
    parser.add_argument('--no_progress', action='store_true',
                        help='no progress bars (they show only on a terminal, on rank 0, anyway)')
    return parser


def _rank0():
    return os.environ.get('RANK', '0') == '0'


def progress_enabled(enabled=True, stream=None):
    """A bar is drawn when enabled, on rank 0, and stderr is a terminal (XMODAL_PROGRESS=1/0 forces)."""
    forced = os.environ.get('XMODAL_PROGRESS')
    if forced is not None and forced != '':
        return forced != '0' and enabled and _rank0()
    stream = sys.stderr if stream is None else stream
    return bool(enabled) and _rank0() and hasattr(stream, 'isatty') and stream.isatty()


def progress(iterable=None, desc=None, total=None, enabled=True, unit='it', leave=False, **kwargs):
    """tqdm(iterable) with rate and ETA on stderr; a pass-through tqdm (disable=True) otherwise."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr,
                disable=not progress_enabled(enabled), dynamic_ncols=True, **kwargs)
