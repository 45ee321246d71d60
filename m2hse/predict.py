"""Retrieve with a trained checkpoint (global or local, detected from its keys).

    python predict.py --model_path CKPT --data_path DATA --query "sky sun clouds" [--top_k 5]
        -> the top-k images of the split for free-text tags
    python predict.py --model_path CKPT --data_path DATA --image_index 12
        -> the top-k captions of the split for one of its images
    python predict.py --model_path CKPT --data_path DATA --export emb.npz
        -> image and caption embeddings of the split (+ caption lengths, labels)
A single query is encoded alone, so a global query vector is the mean over its own length (the batch
padding quirk of upstream model.py:155 cannot apply to a batch of one).
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np
import torch

from common.checkpoint import atomic_open
from common.text import tokenize
from m2hse import data_provider as data
from m2hse.evaluation import compute_sims, encode_global_data, encode_local_data
from m2hse.model import build_model
from m2hse.test import load_vocab
from m2hse.train import load_model_checkpoint, load_weights
from m2hse.xattn import local_scores


def detect_level(state_dict):
    return 'local' if any('local_cnn_enc' in k for k in state_dict) else 'global'


def encode_query(model, vocab, text):
    tokens = tokenize(text)
    ids = [vocab('<start>')] + [vocab(t) for t in tokens] + [vocab('<end>')]
    unknown = [t for t in tokens if vocab(t) == vocab('<unk>')]
    if unknown:
        print('note: not in the vocabulary (mapped to <unk>): %s' % ' '.join(unknown))
    text_encoder = getattr(model, model.level + '_cnn_gru_enc')  # the primary (CNN-paired) text encoder
    with torch.no_grad():
        txt = text_encoder(torch.tensor([ids], device=next(model.parameters()).device), [len(ids)])
    return txt.float().cpu(), len(ids)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model_path', required=True)
    parser.add_argument('--data_path', required=True, help='parent of <data_name>/ as for test_*.py')
    parser.add_argument('--split', default='test')
    parser.add_argument('--vocab_path', default=None, help='default: the one stored in the checkpoint')
    parser.add_argument('--query', default=None, help='free-text tags, e.g. "sky sun clouds"')
    parser.add_argument('--image_index', type=int, default=None, help='row of an image in the split')
    parser.add_argument('--top_k', type=int, default=5)
    parser.add_argument('--export', default=None, help='write embeddings to this .npz')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if args.query is None and args.image_index is None and args.export is None:
        parser.error('give --query, --image_index or --export')

    ckpt = load_model_checkpoint(args.model_path)
    opt = ckpt['opt']
    opt.data_path = args.data_path
    if args.vocab_path:
        opt.vocab_path = args.vocab_path
    level = detect_level(ckpt['model'])
    vocab = load_vocab(level, opt)
    opt.vocab_size = len(vocab)
    model = build_model(level, opt).to(args.device)
    load_weights(model, ckpt['model'], args.model_path)
    model.eval()
    try:
        loader = data.get_test_loader(level, vocab, opt, split=args.split)
    except data.DataLayoutError as err:
        raise SystemExit('data layout error: %s' % err)
    captions = loader.dataset.captions
    with torch.no_grad():
        if level == 'global':
            images, texts, labels = encode_global_data(model, loader)
            lens = None
        else:
            images, texts, lens, labels = encode_local_data(model, loader)

    def scores(img, txt, txt_lens):
        if level == 'global':
            return compute_sims(img, txt)
        return local_scores(torch.from_numpy(img).float(), torch.from_numpy(txt).float(), txt_lens,
                            opt.raw_feature_norm, opt.lambda_softmax, impl='fast').numpy()

    results = {}
    if args.query is not None:
        q, q_len = encode_query(model, vocab, args.query)
        s = scores(images, q.double().numpy(), [q_len])[:, 0]
        top = np.argsort(-s, kind='stable')[:args.top_k]
        print('top-%d images for "%s":' % (args.top_k, args.query))
        for rank, i in enumerate(top, 1):
            print('%2d. image %d  score %.4f  (its caption: %s)' % (rank, i, s[i], captions[i]))
        results['images'] = top.tolist()
    if args.image_index is not None:
        if not 0 <= args.image_index < len(images):
            raise SystemExit('--image_index must be in [0, %d)' % len(images))
        s = scores(images[args.image_index:args.image_index + 1], texts, lens)[0]
        top = np.argsort(-s, kind='stable')[:args.top_k]
        print('top-%d captions for image %d:' % (args.top_k, args.image_index))
        for rank, j in enumerate(top, 1):
            print('%2d. caption %d  score %.4f  %s' % (rank, j, s[j], captions[j]))
        results['captions'] = top.tolist()
    if args.export:
        payload = {'images': images, 'captions': texts, 'labels': labels}
        if lens is not None:
            payload['caption_lengths'] = np.asarray(lens)
        with atomic_open(args.export, 'wb') as f:
            np.savez(f, **payload)
        print('wrote %s (%s)' % (args.export, ', '.join('%s %s' % (k, v.shape) for k, v in payload.items())))
    return results


if __name__ == '__main__':
    main()
