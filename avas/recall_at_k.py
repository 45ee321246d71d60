"""recall@K of a recall result CSV (AIS align_recall@K.py; this is its importable name).

    python align_recall@K.py [--file CSV] [--k 5] [--out_json PATH]
prints 'final recall k= 0.788' for the released model on the 500-POI set."""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

from avas.formats import read_recall_results
from common.errors import cli_main
from common.logs import print_config
from common.safeio import check_writable


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--file', default='data/align_recall@k_with_MKG_20221021_poi_500.csv')
    p.add_argument('--k', default=5, type=int, help='recall_k')
    p.add_argument('--out_json', default=None, help='write {"recall@<K>": value} here')
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    print_config(args)
    if args.out_json:
        check_writable(args.out_json, '--out_json file')
    # imports after parsing: --help stays fast (avas.evaluation pulls in torch and sklearn)
    from avas.evaluation import recall_at_k
    from common.results import write_results
    rows = read_recall_results(args.file)
    value = recall_at_k(rows, args.k)
    print('final recall k= {:.3f}'.format(value))
    if args.out_json:
        write_results(args.out_json, {'recall@%d' % args.k: value, 'n_pois': len({r[0] for r in rows})},
                      'avas', argv=argv, data_path=args.file)
    return value


if __name__ == '__main__':
    cli_main(main)
