"""Retrieve with a trained checkpoint (global or local, detected from its keys).

    python predict.py --checkpoint CKPT --data_path DATA --query "sky sun clouds" [--top_k 5]
        -> the top-k images of the split for free-text tags
    python predict.py --checkpoint CKPT --data_path DATA --image_index 12
        -> the top-k captions of the split for one of its images
    python predict.py --checkpoint CKPT --data_path DATA --export emb.npz
        -> image and caption embeddings of the split (+ caption lengths, labels)
    ... --gallery OUT_DIR  -> OUT_DIR/gallery.html + gallery.png of the queries above
Image names come from the split's `{split}_images.txt` (one Corel5K file name per item, the list
extract_features.py reads; --image_list overrides). Ground truth: for a tag query, images whose
caption holds every query tag; for an image, captions of its class (the mAP relevance).
A single query is encoded alone, so a global query vector is the mean over its own length (the batch
padding quirk of upstream model.py:155 cannot apply to a batch of one).
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

from common.errors import cli_main
from common.progress import add_progress_arg


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add('--checkpoint', '--model_path', dest='checkpoint', required=True,
        help='model.pth.tar / model_best.pth.tar (old spelling: --model_path)')
    add('--data_path', required=True, help='parent of <data_name>/ as for test_*.py')
    add('--split', default='test')
    add('--vocab_path', default=None, help='default: the one stored in the checkpoint')
    add('--query', default=None, help='free-text tags, e.g. "sky sun clouds"')
    add('--image_index', type=int, default=None, help='row of an image in the split')
    add('--top_k', type=int, default=5)
    add('--export', default=None, help='write embeddings to PATH.npz (.npz is added when missing)')
    add('--image_list', default=None,
        help='file names of the split\'s images, one a line (default: <split>_images.txt beside the '
             'features, when present)')
    add('--image_dir', default=None, help='folder the --image_list names are relative to (default: its folder)')
    add('--gallery', default=None, help='write gallery.html and gallery.png of the queries to this folder')
    add('--device', default='cpu')
    add_progress_arg(parser)
    return parser


def export_path(path):
    """np.savez to a file object keeps the name as given; upstream-style tools expect .npz."""
    return path if path.endswith('.npz') else path + '.npz'


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.query is None and args.image_index is None and args.export is None:
        parser.error('give --query, --image_index or --export')
    if args.top_k < 1:
        parser.error('--top_k must be at least 1')
    from m2hse import retrieval  # torch: imported after parsing so that --help answers at once
    return retrieval.run(args, export_path(args.export) if args.export else None)


if __name__ == '__main__':
    cli_main(main)
