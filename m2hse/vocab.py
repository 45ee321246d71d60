"""Build the vocabulary JSON from train+dev captions (upstream vocab.py run as a script).

    python vocab.py --data_path data/coarse-grained-data --data_name corel5k_precomp
writes ./vocab/<data_name>_vocab.json relative to the working directory (as upstream; threshold 2).
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

from common.vocab import Vocabulary, build_vocab, deserialize_vocab, serialize_vocab  # noqa: F401
from m2hse.data_provider import read_captions

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
    captions = []
    for name in annotations.get(opt.data_name, ['train_caps.txt', 'dev_caps.txt']):
        path = os.path.join(opt.data_path, opt.data_name, name)
        if not os.path.isfile(path):
            raise SystemExit('caption file not found: %s' % path)
        captions.extend(read_captions(path))
    vocab = build_vocab(captions, opt.threshold)
    dest = './vocab/%s_vocab.json' % opt.data_name
    serialize_vocab(vocab, dest)
    print("Saved vocabulary file to ", dest)
    return vocab


if __name__ == '__main__':
    main()
