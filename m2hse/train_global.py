"""Train the global-level subnetwork of M2HSE (upstream train_global.py; same flags, see opts.py)."""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from m2hse import train


def main(argv=None):
    return train.main('global', argv)


if __name__ == "__main__":
    main()
