"""Evaluate a global-level M2HSE checkpoint on the test split files (see m2hse/test.py)."""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from m2hse import test


def main(argv=None):
    return test.main('global', argv)


if __name__ == "__main__":
    main()
