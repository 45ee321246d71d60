"""Evaluate a global-level M2HSE checkpoint on the test split files (see m2hse/test.py)."""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.errors import cli_main
from m2hse import opts


def main(argv=None):
    args = opts.build_test_parser('global').parse_args(argv)
    from m2hse import test  # torch: imported after parsing so that --help answers at once
    return test.main('global', argv, args=args)


if __name__ == "__main__":
    cli_main(main)
