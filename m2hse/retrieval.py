"""Query a trained checkpoint (the library behind predict.py): encode a split, rank images for free-text
tags and captions for an image, name the items from the split's image list, export embeddings and
draw a retrieval gallery."""
import os
from typing import NamedTuple

import numpy as np
import torch

from common.errors import InputError
from common.safeio import (BadImageError, check_writable, check_writable_dir, cleanup_stale_tmp, read_text_lines,
                           save_npz_atomic, verify_image)
from common.text import tokenize
from common.vocab import caption_to_ids
from m2hse import data_provider as data
from m2hse.checkpoints import check_vocabulary, detect_level, load_model_checkpoint, load_weights
from m2hse.evaluation import compute_sims, encode_global_data, encode_local_data
from m2hse.model import build_model
from m2hse.test import load_vocab
from m2hse.xattn import local_scores


class Encoded(NamedTuple):
    """A split encoded by a checkpoint: embeddings, caption lengths (local only), labels, captions."""
    level: str
    images: np.ndarray
    texts: np.ndarray
    lengths: list
    labels: np.ndarray
    captions: list


class Hit(NamedTuple):
    index: int
    score: float
    gt: bool


def encode_query(model, vocab, text):
    tokens = tokenize(text)
    ids = caption_to_ids(vocab, text, tokenize)
    unknown = [t for t in tokens if vocab(t) == vocab('<unk>')]
    if unknown:
        print('note: not in the vocabulary (mapped to <unk>): %s' % ' '.join(unknown))
    text_encoder = getattr(model, model.level + '_cnn_gru_enc')  # the primary (CNN-paired) text encoder
    with torch.no_grad():
        txt = text_encoder(torch.tensor([ids], device=next(model.parameters()).device), [len(ids)])
    return txt.float().cpu(), len(ids)


def load_and_encode(args):
    """Checkpoint + split -> (model, vocab, opt, Encoded)."""
    ckpt = load_model_checkpoint(args.checkpoint)
    opt = ckpt['opt']
    opt.data_path = args.data_path
    if args.vocab_path:
        opt.vocab_path = args.vocab_path
    level = detect_level(ckpt['model'])
    vocab, vocab_file = load_vocab(level, opt)
    check_vocabulary(args.checkpoint, ckpt, vocab, vocab_file)
    opt.vocab_size = len(vocab)
    model = build_model(level, opt).to(args.device)
    load_weights(model, ckpt['model'], args.checkpoint)
    model.eval()
    loader = data.get_test_loader(level, vocab, opt, split=args.split)
    show = not args.no_progress
    with torch.no_grad():
        if level == 'global':
            images, texts, labels = encode_global_data(model, loader, show)
            lens = None
        else:
            images, texts, lens, labels = encode_local_data(model, loader, show)
    return model, vocab, opt, Encoded(level, images, texts, lens, labels, loader.dataset.captions)


def scores(enc, opt, img, txt, txt_lens):
    if enc.level == 'global':
        return compute_sims(img, txt)
    return local_scores(torch.from_numpy(img).float(), torch.from_numpy(txt).float(), txt_lens,
                        opt.raw_feature_norm, opt.lambda_softmax, impl='fast').numpy()


def top_k(s, k, relevant):
    order = np.argsort(-s, kind='stable')[:k]
    return [Hit(int(i), float(s[i]), bool(relevant[i])) for i in order]


def images_for_text(model, vocab, opt, enc, query, k):
    """Top-k images for free-text tags; ground truth = images whose caption holds every query tag."""
    q, q_len = encode_query(model, vocab, query)
    s = scores(enc, opt, enc.images, q.double().numpy(), [q_len])[:, 0]
    wanted = set(tokenize(query))
    relevant = [bool(wanted) and wanted <= set(tokenize(c)) for c in enc.captions]
    return top_k(s, k, relevant)


def captions_for_image(opt, enc, index, k):
    """Top-k captions for image `index`; ground truth = captions of its class."""
    if not 0 <= index < len(enc.images):
        raise InputError('--image_index %d: the split has images 0..%d' % (index, len(enc.images) - 1))
    lens = enc.lengths
    s = scores(enc, opt, enc.images[index:index + 1], enc.texts, lens)[0]
    return top_k(s, k, enc.labels == enc.labels[index])


def read_image_list(path, image_dir, n_items):
    """(names, paths) of the split's images from a list of file names, one per item in row order."""
    names = [line.strip() for line in read_text_lines(path, 'image list')]
    while names and not names[-1]:
        names.pop()
    if len(names) != n_items:
        raise InputError('%s: lists %d images but the split has %d items (one file name per caption line)'
                         % (path, len(names), n_items))
    root = image_dir or os.path.dirname(os.path.abspath(path))
    return names, [os.path.join(root, name) for name in names]


def find_image_list(args, opt):
    if args.image_list:
        return args.image_list
    default = os.path.join(data.split_dir(opt), '%s_images.txt' % args.split)
    return default if os.path.isfile(default) else None


def usable_images(paths):
    """Paths of images that decode; the others become None and are counted (bad images are skipped)."""
    good, bad = [], []
    for path in paths:
        try:
            verify_image(path)
            good.append(path)
        except BadImageError as err:
            good.append(None)
            bad.append(str(err))
    if bad:
        print('skipped %d unreadable image(s) in the gallery, e.g. %s' % (len(bad), bad[0]))
    return good


def gallery_rows(enc, names, paths, text_hits, query, image_hits, index):
    rows = []
    label = (lambda i: names[i]) if names else (lambda i: 'image %d' % i)
    if text_hits is not None:
        wanted = sorted({h.index for h in text_hits})
        shown = dict(zip(wanted, usable_images([paths[i] for i in wanted]))) if paths else {}
        rows.append({'query': query, 'query_image': None,
                     'results': [{'image': shown.get(h.index), 'text': enc.captions[h.index], 'score': h.score,
                                  'gt': h.gt, 'name': label(h.index)} for h in text_hits]})
    if image_hits is not None:
        query_image = usable_images([paths[index]])[0] if paths else None
        rows.append({'query': '%s (%s)' % (label(index), enc.captions[index]), 'query_image': query_image,
                     'results': [{'image': None, 'text': enc.captions[h.index], 'score': h.score, 'gt': h.gt,
                                  'name': 'caption %d' % h.index} for h in image_hits]})
    return rows


def write_gallery(out_dir, title, rows):
    from common.gallery import write_gallery as draw  # PIL + matplotlib: only when --gallery is given
    html, png = draw(out_dir, title, rows)
    print('wrote %s and %s' % (html, png))
    return html, png


def run(args, export):
    """predict.py's work once its flags are parsed; returns {'images': [...], 'captions': [...]}."""
    if export:
        check_writable(export, '--export file')
        cleanup_stale_tmp(export)
    if args.gallery:
        check_writable_dir(args.gallery, '--gallery folder')
    model, vocab, opt, enc = load_and_encode(args)
    list_file = find_image_list(args, opt)
    names, paths = read_image_list(list_file, args.image_dir, len(enc.captions)) if list_file else (None, None)
    name = (lambda i: names[i]) if names else (lambda i: 'image %d' % i)

    results, text_hits, image_hits = {}, None, None
    if args.query is not None:
        text_hits = images_for_text(model, vocab, opt, enc, args.query, args.top_k)
        print('top-%d images for "%s":' % (args.top_k, args.query))
        for rank, h in enumerate(text_hits, 1):
            print('%2d. %s  score %.4f%s  (its caption: %s)' % (rank, name(h.index), h.score,
                                                                '  [gt]' if h.gt else '', enc.captions[h.index]))
        results['images'] = [h.index for h in text_hits]
    if args.image_index is not None:
        image_hits = captions_for_image(opt, enc, args.image_index, args.top_k)
        print('top-%d captions for %s:' % (args.top_k, name(args.image_index)))
        for rank, h in enumerate(image_hits, 1):
            print('%2d. caption %d  score %.4f%s  %s' % (rank, h.index, h.score, '  [gt]' if h.gt else '',
                                                         enc.captions[h.index]))
        results['captions'] = [h.index for h in image_hits]
    if export:
        payload = {'images': enc.images, 'captions': enc.texts, 'labels': enc.labels}
        if enc.lengths is not None:
            payload['caption_lengths'] = np.asarray(enc.lengths)
        save_npz_atomic(export, **payload)
        print('wrote %s (%s)' % (export, ', '.join('%s %s' % (k, v.shape) for k, v in payload.items())))
    if args.gallery and (text_hits or image_hits):
        rows = gallery_rows(enc, names, paths, text_hits, args.query, image_hits, args.image_index)
        results['gallery'] = write_gallery(args.gallery, 'M2HSE %s-level retrieval (%s)' % (enc.level, args.split),
                                           rows)
    return results
