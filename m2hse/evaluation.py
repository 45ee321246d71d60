"""Evaluation (upstream evaluation.py): encode a split in file order, score every image against every
caption, and report label-based mAP in both directions (i2t on rows, t2i on columns)."""
from __future__ import print_function

import os
from typing import NamedTuple

import numpy as np
import torch

from common.errors import InputError
from common.progress import progress
from m2hse.metrics import i2t_mAP, t2i_mAP  # upstream evaluation.py defined these here
from m2hse.xattn import local_scores

SHARD_SIZE = 128


class EvalResult(NamedTuple):
    """What `evaluate` returns: both mAPs, their sum, the split size, the score matrix and labels."""
    i2t_mAP: float
    t2i_mAP: float
    mAP_sum: float
    n_images: int
    n_texts: int
    sims: np.ndarray
    labels: np.ndarray

    def metrics(self):
        """The numbers written to --out_json."""
        return {k: getattr(self, k) for k in ('i2t_mAP', 't2i_mAP', 'mAP_sum', 'n_images', 'n_texts')}


def logging_func(log_file, message):
    """Append `message` to `log_file` (upstream needed the folder to exist; we create it)."""
    folder = os.path.dirname(log_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(log_file, 'a') as f:
        f.write(message)


def _scatter_labels(store, ids, lab):
    """Upstream `labels[ids] = lab` (evaluation.py:235,267) only ran on CUDA with numpy < 1.20."""
    for nid, value in zip(ids, lab):
        store[nid] = float(value)


def encode_global_data(model, data_loader, show_progress=True):
    """(N, d) image and caption embeddings (float64 copies of float32) and (N,) float64 labels."""
    n = len(data_loader.dataset)
    img_embs = txt_embs = None
    labels = np.zeros(n)
    for cnns, captions, lengths, masks, ids, lab, bovws in progress(data_loader, desc='encode', unit='batch',
                                                                    enabled=show_progress):
        cnn_embs, gru_embs = model.forward_emb_cnn(cnns, captions, lengths)
        if img_embs is None:
            img_embs = np.zeros((n, cnn_embs.size(1)))
            txt_embs = np.zeros((n, gru_embs.size(1)))
        img_embs[ids] = cnn_embs.detach().float().cpu().numpy()
        txt_embs[ids] = gru_embs.detach().float().cpu().numpy()
        _scatter_labels(labels, ids, lab)
    return img_embs, txt_embs, labels


def encode_local_data(model, data_loader, show_progress=True):
    """(N, 9, d) region and (N, max_len, d) zero-padded word embeddings, caption lengths, labels."""
    n = len(data_loader.dataset)
    max_n_word = max(len(data_loader.dataset.encode_caption(c)) for c in data_loader.dataset.captions)
    img_embs = cap_embs = None
    cap_lens = [0] * n
    labels = np.zeros(n)
    for cnns, captions, lengths, masks, ids, lab, bovws in progress(data_loader, desc='encode', unit='batch',
                                                                    enabled=show_progress):
        cnn_emb, cap_emb = model.forward_emb_cnn(cnns, captions, lengths)
        if img_embs is None:
            img_embs = np.zeros((n,) + tuple(cnn_emb.shape[1:]))
            cap_embs = np.zeros((n, max_n_word, cap_emb.size(2)))
        img_embs[ids] = cnn_emb.detach().float().cpu().numpy()
        cap_embs[ids, :int(max(lengths)), :] = cap_emb.detach().float().cpu().numpy()
        for j, nid in enumerate(ids):
            cap_lens[nid] = int(lengths[j])
        _scatter_labels(labels, ids, lab)
    return img_embs, cap_embs, cap_lens, labels


def compute_sims(images, captions):
    """Global scores (N_img, N_cap), float64 dot products (upstream shards these; same values)."""
    return np.dot(captions, images.T).T


def shard_xattn(images, captions, caplens, opt, attention='fast', device='cpu', shard_size=SHARD_SIZE,
                show_progress=True):
    """Local t2i + i2t scores (N_img, N_cap) float64, computed shard by shard as upstream."""
    n_im_shard = int((len(images) - 1) / shard_size) + 1
    n_cap_shard = int((len(captions) - 1) / shard_size) + 1
    # upstream computes t2i and i2t in two passes and prints this line once per pass
    print("n_im_shard: %d, n_cap_shard: %d" % (n_im_shard, n_cap_shard))
    print("n_im_shard: %d, n_cap_shard: %d" % (n_im_shard, n_cap_shard))
    d = np.zeros((len(images), len(captions)))
    for i in progress(range(n_im_shard), desc='local scores', unit='shard', enabled=show_progress):
        im_start, im_end = shard_size * i, min(shard_size * (i + 1), len(images))
        im = torch.from_numpy(images[im_start:im_end]).to(device).float()
        for j in range(n_cap_shard):
            cap_start, cap_end = shard_size * j, min(shard_size * (j + 1), len(captions))
            s = torch.from_numpy(captions[cap_start:cap_end]).to(device).float()
            lens = caplens[cap_start:cap_end]
            s = s[:, :max(lens)]
            sim = local_scores(im, s, lens, opt.raw_feature_norm, opt.lambda_softmax, impl=attention,
                               dedupe=attention == 'fast')
            d[im_start:im_end, cap_start:cap_end] = sim.cpu().numpy()
    return d


def evaluate(level, model, data_loader, opt, attention='fast', show_progress=True):
    """Encode + score + mAP (an EvalResult with the metrics, the score matrix and the labels)."""
    print("-------- evaluation --------")
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        if level == 'global':
            img_embs, txt_embs, labels = encode_global_data(model, data_loader, show_progress)
            print('global_Images: %d, global_Texts: %d' % (img_embs.shape[0], txt_embs.shape[0]))
            sims = compute_sims(img_embs, txt_embs)
        else:
            img_embs, txt_embs, cap_lens, labels = encode_local_data(model, data_loader, show_progress)
            print('local_Images: %d, local_Texts: %d' % (img_embs.shape[0], txt_embs.shape[0]))
            sims = shard_xattn(img_embs, txt_embs, cap_lens, opt, attention=attention, device=device,
                               show_progress=show_progress)
    if not np.isfinite(sims).all():
        raise InputError('the score matrix holds NaN/inf values (non-finite weights or features); no mAP is '
                         'reported. Check the checkpoint and the feature files')
    mAP_i2t = i2t_mAP(sims, labels)
    mAP_t2i = t2i_mAP(sims, labels)
    mAP_sum = mAP_i2t + mAP_t2i
    print("===============================")
    print("i2t mAP %.4f" % mAP_i2t)
    print("t2i mAP %.4f" % mAP_t2i)
    print("mAP_sum: %.4f" % mAP_sum)
    print("===============================")
    return EvalResult(float(mAP_i2t), float(mAP_t2i), float(mAP_sum), int(sims.shape[0]), int(sims.shape[1]),
                      sims, labels)


def log_performance(opt, split, result):
    """Append upstream's result line ("Text to text" is upstream's own label for t2i)."""
    message = "split: %s \n" \
              "Image to text: %.4f " \
              "Text to text: %.4f " \
              "mAP_sum: %.4f " \
              % (split, result.i2t_mAP, result.t2i_mAP, result.mAP_sum)
    logging_func(os.path.join(opt.logger_name, "performance.log"), message)


def eval_global_mAP(model, data_loader, opt, split='dev'):
    result = evaluate('global', model, data_loader, opt)
    log_performance(opt, split, result)
    return result.mAP_sum


def eval_local_mAP(model, data_loader, opt, split='dev', attention='fast'):
    result = evaluate('local', model, data_loader, opt, attention=attention)
    log_performance(opt, split, result)
    return result.mAP_sum
