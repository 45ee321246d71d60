"""Fetch the images behind a recall or ranking CSV into the local layout the scripts read
(for users with internet; nothing is fetched at evaluation time).

    python avas/download_images.py --csv data/temp_recall_biztype0_fc5_imagern_500.csv \
        --out_dir temp_recall_biztype0_fc5_imagern_500          # -> <poi_id>_<rank_number>.jpg
    python avas/download_images.py --csv data/dwd_mml_train_dataset_1007_urls_val_with_poi_tuomin.csv \
        --out_dir oss_images                                     # -> <basename(oss_url / oss_url2)>

Concurrent, retried with exponential back-off, resumable (existing files are skipped, partial ones
never kept), every downloaded file checked to be an image; failures go to --report (CSV).
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import io
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from avas.formats import (RECORD_SEP, DataFormatError, parse_ranking_line, read_ranking_lines, read_recall_csv,
                       recall_image_name, url_to_local)
from avas.errors import MissingFileError
from common.atomic import atomic_open
from common.errors import cli_main
from common.safeio import check_writable, check_writable_dir, cleanup_stale_tmp

HEADERS = {'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) '
                         'Chrome/65.0.3325.181 Safari/537.36'}  # align_recall@K.py's header


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--csv', required=True, help='recall CSV or $record$ ranking CSV')
    p.add_argument('--out_dir', required=True)
    p.add_argument('--format', default='auto', choices=['auto', 'recall', 'ranking'])
    p.add_argument('--workers', default=16, type=int)
    p.add_argument('--retries', default=3, type=int, help='extra attempts after a failure')
    p.add_argument('--backoff', default=1.0, type=float, help='seconds before retry 1; doubled each retry')
    p.add_argument('--timeout', default=20.0, type=float, help='seconds per request')
    p.add_argument('--report', default=None, help='failure report CSV (default <out_dir>/download_failures.csv)')
    return p


def detect_format(path):
    if not os.path.isfile(path):
        raise MissingFileError('%s: CSV not found; check --csv' % path)
    with open(path, 'rb') as f:
        head = f.read(4096)
    return 'ranking' if RECORD_SEP.encode() in head else 'recall'


def jobs_for(path, fmt, out_dir):
    """[(url, destination)] without duplicate destinations, in file order."""
    jobs = {}
    if fmt == 'recall':
        for row in read_recall_csv(path):
            jobs.setdefault(os.path.join(out_dir, recall_image_name(row)), row.url)
    else:
        for lineno, line in read_ranking_lines(path):
            try:
                record = parse_ranking_line(line, lineno, path)
            except DataFormatError as err:
                print('WARNING: skipped: %s' % err)
                continue
            for url in (record.oss_url, record.oss_url2):
                jobs.setdefault(url_to_local(url, out_dir), url)
    return [(url, dest) for dest, url in jobs.items()]


def fetch_one(url, dest, retries=3, backoff=1.0, timeout=20.0):
    """Download url to dest (atomically). Returns None on success or if dest exists, else the error."""
    if os.path.isfile(dest) and os.path.getsize(dest) > 0:
        return None
    error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            req = urllib.request.Request(url, headers=HEADERS)
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read()
            Image.open(io.BytesIO(data)).verify()  # an HTML error page is not an image
            with atomic_open(dest, 'wb') as f:  # a kill never leaves a partial image under its name
                f.write(data)
            return None
        except Exception as err:  # urllib/http/PIL errors: retried, then reported
            error = '%s: %s' % (type(err).__name__, err)
    return error


def main(argv=None):
    args = get_parser().parse_args(argv)
    fmt = detect_format(args.csv) if args.format == 'auto' else args.format
    report = args.report or os.path.join(args.out_dir, 'download_failures.csv')
    check_writable_dir(args.out_dir, '--out_dir')
    check_writable(report, 'failure report')
    cleanup_stale_tmp(args.out_dir)
    jobs = jobs_for(args.csv, fmt, args.out_dir)
    todo = [(u, d) for u, d in jobs if not (os.path.isfile(d) and os.path.getsize(d) > 0)]
    print('%s CSV: %d images, %d already present, %d to fetch' % (fmt, len(jobs), len(jobs) - len(todo), len(todo)))
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        errors = list(pool.map(lambda j: fetch_one(j[0], j[1], args.retries, args.backoff, args.timeout), todo))
    failures = [(u, d, e) for (u, d), e in zip(todo, errors) if e]
    with atomic_open(report, 'w') as f:
        f.write('url,destination,error\n')
        for u, d, e in failures:
            f.write('%s,%s,"%s"\n' % (u, d, e.replace('"', "'")))
    print('fetched %d, failed %d (report: %s)' % (len(todo) - len(failures), len(failures), report))
    if failures:
        print('re-run the same command to retry the failures (existing files are skipped)')
    return {'total': len(jobs), 'fetched': len(todo) - len(failures), 'failed': len(failures), 'report': report}


def main_exit_code():
    """Exit code 2 while failures remain (re-run to retry them)."""
    return 2 if main()['failed'] else 0


if __name__ == '__main__':
    cli_main(main_exit_code)
