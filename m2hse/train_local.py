"""Train the local-level subnetwork of M2HSE (upstream train_local.py; same flags, see opts.py)."""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.errors import cli_main
from m2hse import opts


def main(argv=None):
    opt = opts.parse_opt(argv)
    from m2hse import train  # torch: imported after parsing so that --help answers at once
    return train.main('local', argv, opt=opt)


if __name__ == "__main__":
    cli_main(main)
