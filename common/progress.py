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
    show = progress_enabled(enabled)
    if show and 'ncols' not in kwargs and _terminal_width(sys.stderr) == 0:
        kwargs['ncols'] = 100  # a terminal reporting 0 columns (a fresh pty, some CI) would get no bar at all
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr,
                disable=not show, dynamic_ncols='ncols' not in kwargs, **kwargs)


def _terminal_width(stream):
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a terminal (forced on), or no file descriptor
        return 0
