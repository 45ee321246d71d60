"""Build the vocabulary JSON from train+dev captions (upstream vocab.py run as a script).

    python vocab.py --data_path data/coarse-grained-data --data_name corel5k_precomp
writes ./vocab/<data_name>_vocab.json relative to the working directory (as upstream; threshold 2).
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

from common.errors import InputError, cli_main
from common.safeio import check_writable

annotations = {
    'corel5k_precomp': ['train_caps.txt', 'dev_caps.txt'],
    'pascal_precomp': ['train_caps.txt', 'dev_caps.txt'],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data_path', default='data')
    parser.add_argument('--data_name', default='pascal_precomp', help='corel5k_precomp or pascal_precomp')
    parser.add_argument('--threshold', default=2, type=int, help='keep words seen at least this often')
    opt = parser.parse_args(argv)
    from common.vocab import build_vocab, serialize_vocab  # nltk: after parsing so that --help is fast
    from m2hse.data_provider import read_captions  # torch, likewise
    dest = './vocab/%s_vocab.json' % opt.data_name
    check_writable(dest, 'vocabulary file')
    captions = []
    for name in annotations.get(opt.data_name, ['train_caps.txt', 'dev_caps.txt']):
        path = os.path.join(opt.data_path, opt.data_name, name)
        if not os.path.isfile(path):
            raise InputError('%s: caption file not found' % path)
        captions.extend(read_captions(path))
    if not any(c.strip() for c in captions):
        raise InputError('%s: no captions to build a vocabulary from' % os.path.join(opt.data_path, opt.data_name))
    vocab = build_vocab(captions, opt.threshold)
    serialize_vocab(vocab, dest)
    print("Saved vocabulary file to ", dest)
    return vocab


if __name__ == '__main__':
    cli_main(main)
