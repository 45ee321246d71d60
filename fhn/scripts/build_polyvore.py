#!/usr/bin/env python
"""Polyvore images -> LMDB: `build_polyvore.py SRC_DIR DST_LMDB` (upstream scripts/build_polyvore.py).

Key = image file name (ASCII), value = the raw file bytes (JPEG), one write transaction.
Every image is decoded first: a corrupt one is skipped and listed (or, with --strict, an error).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import logging  # noqa: E402

from common.errors import InputError, cli_main  # noqa: E402
from common.progress import add_progress_arg, progress  # noqa: E402
from common.safeio import check_writable_dir  # noqa: E402

LOGGER = logging.getLogger(__name__)


def build_parser():
    parser = argparse.ArgumentParser(description="Create LMDB")
    parser.add_argument("src", default="data/polyvore/images/291x291", type=str,
                        help="image folder for polyvore dataset")
    parser.add_argument("dst", type=str, help="folder to save lmdb")
    parser.add_argument("--map_size", type=int, default=2 ** 40,
                        help="LMDB map size in bytes (upstream: 2**40)")
    parser.add_argument("--strict", action="store_true",
                        help="a corrupt image is an error (default: skip it and list it)")
    add_progress_arg(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] - %(asctime)s - %(message)s")
    if not os.path.isdir(args.src):
        raise InputError("%s: image folder not found" % args.src)
    check_writable_dir(args.dst, "LMDB folder")
    from fhn.image_store import pack_images  # lmdb and PIL only once the flags are valid

    total = sum(1 for f in os.listdir(args.src) if os.path.isfile(os.path.join(args.src, f)))
    with progress(total=total, desc="pack images", unit="img", enabled=not args.no_progress) as bar:
        count, skipped = pack_images(args.dst, args.src, args.map_size, args.strict, bar)
    for name, reason in skipped:
        print("skipped corrupt image %s (%s)" % (os.path.join(args.src, name), reason), file=sys.stderr)
    print("%d images written to %s" % (count, args.dst))
    if skipped:
        print("%d corrupt images skipped; outfits using them are left out when the data is loaded"
              % len(skipped))
    return 0


if __name__ == "__main__":
    cli_main(main)
