"""Input errors and the entry-point wrapper that turns them into one line and a non-zero exit."""
import os
import sys

EXIT_INPUT = 2


class InputError(Exception):
    """A fault caused by input (file, flag, data); the message names it and says what to do."""


def _debug_requested(argv):
    return '--debug' in argv or os.environ.get('XMODAL_DEBUG', '') not in ('', '0')


def _user_facing(err):
    """Errors a user can fix from the message alone (import lazily-defined ones by name)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return isinstance(err, InputError) or 'CheckpointError' in names


def cli_main(main, argv=None):
    """Run `main()`; input faults end as `error: <message>` on stderr and exit 2, no traceback.

    `--debug` (removed from sys.argv before `main` parses it) or XMODAL_DEBUG=1 keeps tracebacks.
    Real bugs keep their traceback either way.
    """
    argv = sys.argv if argv is None else argv
    debug = _debug_requested(argv)
    while '--debug' in argv:
        argv.remove('--debug')
    try:
        code = main()
    except KeyboardInterrupt:
        if debug:
            raise
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # only input faults are shortened; anything else re-raises
        if debug or not _user_facing(err):
            raise
        print('error: %s' % err, file=sys.stderr)
        sys.exit(EXIT_INPUT)
    sys.exit(code if isinstance(code, int) else 0)
