"""Parse the KDD Cup 2020 Multimodalities Recall TSVs into the files main.py reads.

Upstream names this script in its README but never published it; the rules of this rebuild are
listed in hsl/README.md section 5.
For each split S: {data_path}/{data_name}/S/S.tsv -> S.features.npy (float32 boxes of every
distinct product, in first-appearance order), S.ids.txt, S.products.pkl, S.queries.pkl
(train also S.queries.duplicate.pkl); then {data_path}/{data_name}/kddcup_vocab.pkl.
The TSV is streamed (the real train split is 124-300 GB): features go straight to disk.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import base64
import binascii
import functools
import logging
import pickle
import time
from array import array

import numpy as np

from common.atomic import atomic_open
from common.errors import InputError, cli_main
from common.logs import setup_logging
from common.progress import add_progress_arg, progress
from common.safeio import check_writable_dir, cleanup_stale_tmp
from hsl.records import COLUMNS, VOCAB_FILE, Product, Query, save_records

INT_COLUMNS = (0, 1, 2, 3, 8)
NPY_HEADER_BYTES = 128  # fixed, so the final shape can be written over a placeholder


class ParseError(InputError, ValueError):
    """A malformed TSV row; the message names file, line and field."""


def row_error(path, lineno, field, message):
    where = '%s:%d' % (path, lineno)
    return ParseError('%s: field %r: %s' % (where, field, message) if field else '%s: %s' % (where, message))


def decode_b64(text, path, lineno, field, expected_bytes):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise row_error(path, lineno, field, 'bad base64 (%s)' % err) from None
    if len(raw) != expected_bytes:
        raise row_error(path, lineno, field, 'decodes to %d bytes, num_boxes needs %d'
                        % (len(raw), expected_bytes))
    return raw


def parse_row(line, path, lineno, feature_dim=2048):
    """One TSV line (bytes) -> (product_id, h, w, n, boxes, features, labels, query, query_id);
    boxes/features/labels stay raw little-endian bytes."""
    fields = line.rstrip(b'\r\n').split(b'\t')
    if len(fields) != len(COLUMNS):
        raise row_error(path, lineno, None, 'expected %d tab-separated columns, found %d'
                        % (len(COLUMNS), len(fields)))
    ints = {}
    for col in INT_COLUMNS:
        try:
            ints[col] = int(fields[col])
        except ValueError:
            raise row_error(path, lineno, COLUMNS[col], 'not an integer: %r'
                            % fields[col][:40].decode('utf-8', 'replace')) from None
    n = ints[3]
    if n < 1:
        raise row_error(path, lineno, 'num_boxes', 'must be >= 1, got %d' % n)
    boxes = decode_b64(fields[4], path, lineno, 'boxes', n * 4 * 4)
    features = decode_b64(fields[5], path, lineno, 'features', n * feature_dim * 4)
    if not np.isfinite(np.frombuffer(features, '<f4')).all():
        raise row_error(path, lineno, 'features', 'holds NaN or inf values')
    labels = decode_b64(fields[6], path, lineno, 'class_labels', n * 8)
    try:
        query = fields[7].decode('utf-8')
    except UnicodeDecodeError as err:
        raise row_error(path, lineno, 'query', 'not UTF-8 (%s)' % err) from None
    return ints[0], ints[1], ints[2], n, boxes, features, labels, query, ints[8]


class NpyAppender(object):
    """A float32 (rows, dim) .npy written row-block by row-block; shape fixed up on close."""

    def __init__(self, path, dim):
        self.path, self.dim, self.rows = path, dim, 0
        # named like atomic_open's temp files, so cleanup_stale_tmp removes it after a kill
        self.tmp = os.path.join(os.path.dirname(path), '.%s.stream.tmp' % os.path.basename(path))
        self.f = open(self.tmp, 'wb')
        self.f.write(self._header(0))

    def _header(self, rows):
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, self.dim)
        body = text.encode('latin1').ljust(NPY_HEADER_BYTES - 10 - 1) + b'\n'
        return b'\x93NUMPY\x01\x00' + len(body).to_bytes(2, 'little') + body

    def append(self, raw, rows):
        self.f.write(raw)
        self.rows += rows

    def close(self):
        self.f.seek(0)
        self.f.write(self._header(self.rows))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


class SplitWriter(object):
    """Accumulates one split: product metadata in compact arrays, features on disk, query rows."""

    def __init__(self, folder, split, feature_dim):
        self.folder, self.split = folder, split
        self.features = NpyAppender(self.file('features.npy'), feature_dim)
        self.seen = set()
        self.pids, self.nboxes, self.heights, self.widths = array('q'), array('q'), array('q'), array('q')
        self.boxes, self.labels = bytearray(), bytearray()
        self.text_ids = {}
        self.row_text, self.row_pid = array('q'), array('q')   # train: one entry per TSV row
        self.pools = {}                                         # others: query_id -> [text, pids]

    def file(self, suffix):
        return os.path.join(self.folder, '%s.%s' % (self.split, suffix))

    def add(self, pid, h, w, n, boxes, features, labels, query, qid):
        if pid not in self.seen:  # first occurrence of a product wins
            self.seen.add(pid)
            self.pids.append(pid)
            self.nboxes.append(n)
            self.heights.append(h)
            self.widths.append(w)
            self.boxes += boxes
            self.labels += labels
            self.features.append(features, n)
        text_id = self.text_ids.setdefault(query, len(self.text_ids))
        if self.split == 'train':  # one (query, product) pair per row
            self.row_text.append(text_id)
            self.row_pid.append(pid)
        else:  # candidate pools grouped by query_id
            self.pools.setdefault(qid, [text_id, []])[1].append(pid)

    def texts(self):
        return list(self.text_ids)

    def row_texts(self):
        texts = self.texts()
        return (texts[i] for i in self.row_text)

    def close(self):
        self.features.close()
        with atomic_open(self.file('ids.txt'), 'w') as f:
            f.writelines('%d\n' % pid for pid in self.pids)
        products = Product(np.frombuffer(self.pids, np.int64), np.frombuffer(self.nboxes, np.int64),
                           np.frombuffer(bytes(self.boxes), '<f4'), np.frombuffer(bytes(self.labels), '<i8'),
                           np.frombuffer(self.heights, np.int64), np.frombuffer(self.widths, np.int64))
        save_records(products, self.file('products.pkl'))
        texts = self.texts()
        if self.split == 'train':
            rows = np.frombuffer(self.row_text, np.int64)
            pids = np.frombuffer(self.row_pid, np.int64)
            save_records(Query('train', texts, rows, pids), self.file('queries.duplicate.pkl'))
            _, first = np.unique(rows, return_index=True)  # first row of each distinct text
            first.sort()
            save_records(Query('train', texts, rows[first], pids[first]), self.file('queries.pkl'))
        else:
            qids = list(self.pools)
            text_index = [self.pools[q][0] for q in qids]
            pools = [self.pools[q][1] for q in qids]
            offsets = np.concatenate([[0], np.cumsum([len(p) for p in pools])])
            flat = np.array([p for pool in pools for p in pool], dtype=np.int64)
            save_records(Query(self.split, texts, text_index, flat, qids, offsets), self.file('queries.pkl'))


def parse_split(tsv_path, writer, feature_dim=2048, skip_bad_rows=False, show_progress=True):
    """Stream one TSV into `writer`; returns (rows kept, rows skipped)."""
    kept = skipped = 0
    size = os.path.getsize(tsv_path)
    with open(tsv_path, 'rb', buffering=1 << 22) as f, \
            progress(total=size, unit='B', unit_scale=True, desc=os.path.basename(tsv_path),
                     enabled=show_progress, mininterval=1.0) as bar:
        header = f.readline()
        bar.update(len(header))
        names = tuple(header.rstrip(b'\r\n').decode('utf-8', 'replace').split('\t'))
        if names != COLUMNS:
            raise row_error(tsv_path, 1, None, 'expected the header line %s, found %r'
                            % ('\\t'.join(COLUMNS), '\\t'.join(names)[:200]))
        for lineno, line in enumerate(f, start=2):
            bar.update(len(line))
            if not line.strip():
                continue
            try:
                row = parse_row(line, tsv_path, lineno, feature_dim)
            except ParseError as err:
                if not skip_bad_rows:
                    raise
                skipped += 1
                if skipped <= 10:
                    logging.warning('skipping malformed row: %s', err)
                continue
            writer.add(*row)
            kept += 1
            if kept % 1000 == 0:
                bar.set_postfix(rows=kept, refresh=False)
        bar.set_postfix(rows=kept)
    return kept, skipped


def write_vocab(vocab, path):
    """Pickle under SCAN's class path `vocab.Vocabulary`, so upstream's main.py can read it too."""
    raw = pickle.dumps(vocab, protocol=2)
    ours = b'c%s\n%s\n' % (type(vocab).__module__.encode(), type(vocab).__name__.encode())
    assert raw.count(ours) == 1, 'unexpected pickle layout'
    with atomic_open(path, 'wb') as f:
        f.write(raw.replace(ours, b'cvocab\nVocabulary\n'))


def make_vocab(train_writer, threshold):
    # nltk (through common.text) takes seconds to import: only here, so `--help` answers at once
    from common.text import tokenize
    from common.vocab import build_vocab
    cached_tokenize = functools.lru_cache(maxsize=1 << 20)(tokenize)
    return build_vocab(train_writer.row_texts(), threshold, tokenize=cached_tokenize)


def build_parser():
    parser = argparse.ArgumentParser(description='Parse the KDD Cup 2020 Multimodalities Recall TSVs.')
    parser.add_argument('--data_path', default='../data', help='path to datasets')
    parser.add_argument('--data_name', default='KDDCup2020', help='denote datasets')
    parser.add_argument('--splits', nargs='+', default=['train', 'valid'],
                        help='splits to parse; each reads {data_path}/{data_name}/S/S.tsv')
    parser.add_argument('--feature_dim', default=2048, type=int, help='floats per box feature')
    parser.add_argument('--vocab_threshold', default=4, type=int,
                        help='keep words seen at least this often in train rows (SCAN default)')
    parser.add_argument('--rebuild_vocab', action='store_true',
                        help='replace an existing kddcup_vocab.pkl (default: keep it, e.g. the authors\')')
    parser.add_argument('--skip_bad_rows', action='store_true',
                        help='skip and count malformed rows instead of stopping at the first one')
    add_progress_arg(parser)
    return parser


def split_paths(opt):
    """{split: (tsv, folder)}; every TSV must exist and every folder be writable before parsing."""
    root = os.path.join(opt.data_path, opt.data_name)
    paths = {}
    for split in opt.splits:
        tsv = os.path.join(root, split, '%s.tsv' % split)
        if not os.path.isfile(tsv):
            raise InputError('%s not found (expected {data_path}/{data_name}/%s/%s.tsv)' % (tsv, split, split))
        folder = os.path.dirname(tsv)
        cleanup_stale_tmp(folder)
        check_writable_dir(folder, 'output folder of the parsed %s files' % split)
        paths[split] = (tsv, folder)
    return paths


def parse_one(split, tsv, folder, opt):
    writer = SplitWriter(folder, split, opt.feature_dim)
    start = time.time()
    try:
        kept, skipped = parse_split(tsv, writer, opt.feature_dim, opt.skip_bad_rows,
                                    show_progress=not opt.no_progress)
        if kept == 0:
            raise InputError('%s: no data rows%s; nothing to parse' % (
                tsv, ' left after skipping %d malformed rows' % skipped if skipped else ''))
        writer.close()
    except ParseError as err:
        writer.features.abort()
        raise InputError('%s\n(use --skip_bad_rows to skip malformed rows)' % err) from None
    except BaseException:
        writer.features.abort()
        raise
    elapsed = time.time() - start
    print('=> %s: %d rows, %d products, %d boxes%s (%.1f s, %.1f MB/s)' % (
        split, kept, len(writer.pids), writer.features.rows,
        ', skipped %d malformed rows' % skipped if skipped else '', elapsed,
        os.path.getsize(tsv) / 1e6 / max(elapsed, 1e-9)))
    return writer


def write_or_keep_vocab(opt, writers):
    from hsl.data import load_vocab  # torch loads with it: after parsing, for a fast `--help`
    vocab_path = os.path.join(opt.data_path, opt.data_name, VOCAB_FILE)
    if os.path.isfile(vocab_path) and not opt.rebuild_vocab:
        print('=> keeping existing vocabulary %s (%d words); use --rebuild_vocab to replace it'
              % (vocab_path, len(load_vocab(vocab_path))))
    elif 'train' in writers:
        vocab = make_vocab(writers['train'], opt.vocab_threshold)
        write_vocab(vocab, vocab_path)
        print('=> vocabulary of %d words written to %s' % (len(vocab), vocab_path))
    else:
        print('=> no train split parsed: vocabulary %s not built' % vocab_path)


def main(argv=None):
    opt = build_parser().parse_args(argv)
    setup_logging()
    paths = split_paths(opt)
    writers = {split: parse_one(split, tsv, folder, opt) for split, (tsv, folder) in paths.items()}
    write_or_keep_vocab(opt, writers)


if __name__ == '__main__':
    cli_main(main)
