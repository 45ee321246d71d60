"""Compare two result files (`--out_json`) or two score matrices (`--out_scores`).

    python -m common.diff A.json B.json [--rtol 1e-5] [--atol 1e-8]
    python -m common.diff A.npy B.npy

Prints a table of every compared value, then which metrics either side lacks (e.g. a reference
file in <paper>/results/ that carries only some of a run's metrics); exits 1 when any value differs
beyond tolerance or is missing on one side.
"""
import argparse
import math
import sys

import numpy as np

from common.errors import InputError, cli_main
from common.results import read_results
from common.safeio import load_npy

MISSING = '<missing>'
IGNORED_KEYS = ('provenance', 'schema_version', 'extra', 'source')  # not metrics


def flatten(value, prefix=''):
    """{'i2t': {'r1': 1}} -> {'i2t.r1': 1}; lists become 'key[i]'."""
    items = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if not prefix and k in IGNORED_KEYS:
                continue
            items.update(flatten(v, '%s.%s' % (prefix, k) if prefix else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            items.update(flatten(v, '%s[%d]' % (prefix, i)))
    else:
        items[prefix] = value
    return items


def _close(a, b, rtol, atol):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= atol + rtol * abs(b)
    return a == b


def diff_results(a, b, rtol, atol):
    """Rows (key, a, b, ok) for the union of keys of two results payloads."""
    fa, fb = flatten(a), flatten(b)
    rows = []
    for key in list(fa) + [k for k in fb if k not in fa]:
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        rows.append((key, va, vb, key in fa and key in fb and _close(va, vb, rtol, atol)))
    return rows


def missing_keys(rows):
    """(metrics only A has = B lacks, metrics only B has = A lacks) of diff_results rows."""
    return ([key for key, va, vb, _ in rows if vb == MISSING and va != MISSING],
            [key for key, va, vb, _ in rows if va == MISSING and vb != MISSING])


def diff_scores(a, b, rtol, atol):
    if a.shape != b.shape:
        return [('shape', a.shape, b.shape, False)]
    delta = np.abs(a - b)
    worst = np.unravel_index(np.argmax(delta), delta.shape) if delta.size else ()
    ok = np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    return [('shape', a.shape, b.shape, True),
            ('max|a-b|', float(delta.max()) if delta.size else 0.0, 'at %s' % (worst,), ok),
            ('mean|a-b|', float(delta.mean()) if delta.size else 0.0, '', ok)]


def print_table(rows, out=None):
    out = out or sys.stdout
    width = max([len('metric')] + [len(str(r[0])) for r in rows])
    out.write('%-*s  %-24s  %-24s  %s\n' % (width, 'metric', 'A', 'B', 'status'))
    for key, va, vb, ok in rows:
        status = 'ok' if ok else 'B lacks' if vb == MISSING else 'A lacks' if va == MISSING else 'DIFF'
        out.write('%-*s  %-24s  %-24s  %s\n' % (width, key, _fmt(va), _fmt(vb), status))


def _fmt(v):
    return repr(v) if isinstance(v, float) else str(v)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('a')
    parser.add_argument('b')
    parser.add_argument('--rtol', type=float, default=1e-5)
    parser.add_argument('--atol', type=float, default=1e-8)
    args = parser.parse_args(argv)
    if args.a.endswith('.npy') and args.b.endswith('.npy'):
        rows = diff_scores(load_npy(args.a), load_npy(args.b), args.rtol, args.atol)
        b_lacks = a_lacks = []
    else:
        rows = diff_results(_read(args.a), _read(args.b), args.rtol, args.atol)
        b_lacks, a_lacks = missing_keys(rows)
    print_table(rows)
    if b_lacks:
        print('%s (B) lacks %d metric(s): %s' % (args.b, len(b_lacks), ', '.join(b_lacks)))
    if a_lacks:
        print('%s (A) lacks %d metric(s): %s' % (args.a, len(a_lacks), ', '.join(a_lacks)))
    bad = [r for r in rows if not r[3]]
    print('%d compared, %d differ (rtol=%g, atol=%g)' % (len(rows), len(bad), args.rtol, args.atol))
    return 1 if bad else 0


def _read(path):
    try:
        return read_results(path)
    except FileNotFoundError:
        raise InputError('%s: results file not found' % path) from None
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        raise InputError('%s: not a results JSON (%s); give a file written with --out_json' % (path, err)) from None


if __name__ == '__main__':
    cli_main(main)
