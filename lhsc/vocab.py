"""Build a SCAN-style vocabulary from a precomp dataset's train + dev captions (upstream vocab.py).

    python vocab.py --data_path data --data_name f30k_precomp     # writes ./vocab/<data_name>_vocab.json

Words seen at least 4 times, after '<pad>', '<start>', '<end>', '<unk>'. Note: upstream ran under
Python 2, whose dict order is hash order, so word ids of a rebuilt vocabulary differ from the
shipped files (lhsc/vocab/*.json): released checkpoints need the shipped vocabularies.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

from common.errors import cli_main
from common.vocab import Vocabulary, build_vocab, deserialize_vocab, serialize_vocab  # noqa: F401

annotations = {
    'coco_precomp': ['train_caps.txt', 'dev_caps.txt'],
    'f30k_precomp': ['train_caps.txt', 'dev_caps.txt'],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data_path', default='data')
    parser.add_argument('--data_name', default='f30k_precomp', help='{coco,f30k}_precomp')
    parser.add_argument('--threshold', default=4, type=int, help='minimum word count (upstream: 4)')
    parser.add_argument('--vocab_path', default='./vocab/', help='output folder')
    opt = parser.parse_args(argv)
    from lhsc.data import read_captions  # after parsing: lhsc.data imports torch, --help must not wait
    from common.safeio import check_writable
    dest = os.path.join(opt.vocab_path, '%s_vocab.json' % opt.data_name)
    check_writable(dest, 'vocabulary file (--vocab_path)')
    files = annotations.get(opt.data_name, ['train_caps.txt', 'dev_caps.txt'])
    captions = []
    for name in files:
        captions += read_captions(os.path.join(opt.data_path, opt.data_name, name))
    vocab = build_vocab(captions, opt.threshold)
    serialize_vocab(vocab, dest)
    print("Saved vocabulary file to ", dest)
    return vocab


if __name__ == '__main__':
    cli_main(main)
