"""Evaluation (upstream evaluation.py): encode a split in file order, score every image against every
caption, and report label-based mAP in both directions (i2t on rows, t2i on columns)."""
from __future__ import print_function

import os

import numpy as np
import torch

from m2hse.xattn import local_scores

SHARD_SIZE = 128


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


def encode_global_data(model, data_loader):
    """(N, d) image and caption embeddings (float64 copies of float32) and (N,) float64 labels."""
    n = len(data_loader.dataset)
    img_embs = txt_embs = None
    labels = np.zeros(n)
    for cnns, captions, lengths, masks, ids, lab, bovws in data_loader:
        cnn_embs, gru_embs = model.forward_emb_cnn(cnns, captions, lengths)
        if img_embs is None:
            img_embs = np.zeros((n, cnn_embs.size(1)))
            txt_embs = np.zeros((n, gru_embs.size(1)))
        img_embs[ids] = cnn_embs.detach().float().cpu().numpy()
        txt_embs[ids] = gru_embs.detach().float().cpu().numpy()
        _scatter_labels(labels, ids, lab)
    return img_embs, txt_embs, labels


def encode_local_data(model, data_loader):
    """(N, 9, d) region and (N, max_len, d) zero-padded word embeddings, caption lengths, labels."""
    n = len(data_loader.dataset)
    max_n_word = max(len(data_loader.dataset.encode_caption(c)) for c in data_loader.dataset.captions)
    img_embs = cap_embs = None
    cap_lens = [0] * n
    labels = np.zeros(n)
    for cnns, captions, lengths, masks, ids, lab, bovws in data_loader:
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


def shard_xattn(images, captions, caplens, opt, attention='fast', device='cpu', shard_size=SHARD_SIZE):
    """Local t2i + i2t scores (N_img, N_cap) float64, computed shard by shard as upstream."""
    n_im_shard = int((len(images) - 1) / shard_size) + 1
    n_cap_shard = int((len(captions) - 1) / shard_size) + 1
    # upstream computes t2i and i2t in two passes and prints this line once per pass
    print("n_im_shard: %d, n_cap_shard: %d" % (n_im_shard, n_cap_shard))
    print("n_im_shard: %d, n_cap_shard: %d" % (n_im_shard, n_cap_shard))
    d = np.zeros((len(images), len(captions)))
    for i in range(n_im_shard):
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


def _average_precisions(sims, targets):
    """Upstream i2t_mAP body (evaluation.py:98-130) for rows of `sims`; returns (N, 1) APs.

    Quirk kept (evaluation.py:103): the ranking is `argsort()[:, ::-1]`, the reverse of numpy's
    default (unstable) ascending sort, so ties are ordered exactly as upstream orders them.
    """
    ranking = sims.argsort()[:, ::-1]
    targets = np.asarray(targets)
    AP = np.zeros((sims.shape[0], 1))
    for i in range(sims.shape[0]):
        relevant = targets[ranking[i]] == targets[i]
        rel_count = np.cumsum(relevant)
        positions = np.nonzero(relevant)[0]
        # upstream adds relCount/(j+1) one relevant item at a time: a sequential float64 sum
        terms = rel_count[positions] / (positions + 1)
        AP[i] = np.cumsum(terms)[-1] / rel_count[-1] if len(terms) else np.nan
    return AP


def i2t_mAP(sims, targets):
    """Image -> text mAP: each image row ranks all captions; relevant = same label."""
    return np.mean(_average_precisions(sims, targets))


def t2i_mAP(sims, targets):
    """Text -> image mAP: the same on sims.T."""
    return np.mean(_average_precisions(sims.T, targets))


def evaluate(level, model, data_loader, opt, attention='fast'):
    """Encode + score + mAP; returns a dict with the metrics, the score matrix and the labels."""
    print("-------- evaluation --------")
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        if level == 'global':
            img_embs, txt_embs, labels = encode_global_data(model, data_loader)
            print('global_Images: %d, global_Texts: %d' % (img_embs.shape[0], txt_embs.shape[0]))
            sims = compute_sims(img_embs, txt_embs)
        else:
            img_embs, txt_embs, cap_lens, labels = encode_local_data(model, data_loader)
            print('local_Images: %d, local_Texts: %d' % (img_embs.shape[0], txt_embs.shape[0]))
            sims = shard_xattn(img_embs, txt_embs, cap_lens, opt, attention=attention, device=device)
    mAP_i2t = i2t_mAP(sims, labels)
    mAP_t2i = t2i_mAP(sims, labels)
    mAP_sum = mAP_i2t + mAP_t2i
    print("===============================")
    print("i2t mAP %.4f" % mAP_i2t)
    print("t2i mAP %.4f" % mAP_t2i)
    print("mAP_sum: %.4f" % mAP_sum)
    print("===============================")
    return {'i2t_mAP': float(mAP_i2t), 't2i_mAP': float(mAP_t2i), 'mAP_sum': float(mAP_sum),
            'n_images': int(sims.shape[0]), 'n_texts': int(sims.shape[1]), 'sims': sims, 'labels': labels}


def log_performance(opt, split, result):
    """Append upstream's result line ("Text to text" is upstream's own label for t2i)."""
    message = "split: %s \n" \
              "Image to text: %.4f " \
              "Text to text: %.4f " \
              "mAP_sum: %.4f " \
              % (split, result['i2t_mAP'], result['t2i_mAP'], result['mAP_sum'])
    logging_func(os.path.join(opt.logger_name, "performance.log"), message)


def eval_global_mAP(model, data_loader, opt, split='dev'):
    result = evaluate('global', model, data_loader, opt)
    log_performance(opt, split, result)
    return result['mAP_sum']


def eval_local_mAP(model, data_loader, opt, split='dev', attention='fast'):
    result = evaluate('local', model, data_loader, opt, attention=attention)
    log_performance(opt, split, result)
    return result['mAP_sum']


def random_mAP_sum(labels, n_trials=5, seed=0):
    """mAP_sum of uniformly random score matrices (mean over trials): the chance level to beat."""
    rng = np.random.RandomState(seed)
    n = len(labels)
    return float(np.mean([i2t_mAP(s, labels) + t2i_mAP(s, labels)
                          for s in (rng.rand(n, n) for _ in range(n_trials))]))
