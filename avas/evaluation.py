"""Metrics of both stages: recall@K over the recall result rows (align_recall@K.py) and the
pairwise ranking evaluation of local_eval_test.eval_ (plus the true ROC-AUC of s1 - s2)."""
import os
import time
from collections import namedtuple

import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score

from avas.align_model import encode_texts
from avas.loss import pair_softmax, rank_sigmoid_loss
from common.errors import InputError
from common.progress import progress
from common.runtime import autocast
from common.safeio import check_finite

PairEvaluation = namedtuple('PairEvaluation', 'labels s1 s2 linenos dropped dev_loss dev_accuracy')


def image_id(path):
    """align_recall@K.py:21: the positive test is the file name's text before the first '_'."""
    return os.path.split(path)[1].split('_')[0]


def recall_at_k(rows, k=5):
    """rows: (poi_id, name, image_path, score). Per POI, stable sort by descending score (ties keep
    file order); a hit iff one of the first k images has image_id == poi_id. Returns a fraction."""
    by_poi = {}
    for poi_id, name, path, score in rows:
        by_poi.setdefault(poi_id, []).append((name, image_id(path), float(score)))
    if not by_poi:
        raise InputError('no result rows to evaluate')
    hits = 0
    for poi_id, images in by_poi.items():
        images.sort(key=lambda x: -x[-1])
        hits += any(img_id == poi_id for _, img_id, _ in images[:k])
    return hits / len(by_poi)


def recall_from_matrix(pois, img_paths, scores, k):
    """recall@K of align_recall@K.py computed on the (POIs x images) score matrix: a stable
    descending sort keeps ties in listing order, exactly like sorting the written rows."""
    ids = np.array([image_id(p) for p in img_paths])
    by_poi = {}  # align_recall@K groups rows by poi_id only (one id may carry several names)
    for i, (poi_id, _) in enumerate(pois):
        by_poi.setdefault(poi_id, []).append(i)
    for poi_id, rows in by_poi.items():
        flat, flat_ids = scores[rows].reshape(-1), np.tile(ids, len(rows))
        by_poi[poi_id] = bool(np.any(flat_ids[np.argsort(-flat, kind='stable')[:k]] == poi_id))
    return sum(by_poi.values()) / len(by_poi)


def pairwise_accuracy(labels, s1, s2):
    """What upstream prints as 'Dev accuracy' (the paper's "AUC"): sklearn's accuracy_score of
    pred = s1 > s2 (a tie predicts 0) against label = ctr_a > ctr_b, as local_eval_test.py."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    preds = (np.asarray(s1).reshape(-1) > np.asarray(s2).reshape(-1)).astype(np.float64)
    return float(accuracy_score(labels, preds)) if labels.size else float('nan')


def pair_roc_auc(labels, s1, s2):
    """True ROC-AUC of s1 - s2 against the labels (sklearn; ties count one half); NaN unless both
    classes occur."""
    labels = np.asarray(labels).reshape(-1)
    if len(set(labels.tolist())) != 2:
        return float('nan')
    return float(roc_auc_score(labels, np.asarray(s1).reshape(-1) - np.asarray(s2).reshape(-1)))


def pair_text_features(align_model, texts, device, use_norm, text_batch_size=64):
    return encode_texts(align_model, texts, device, norm=bool(use_norm), batch_size=text_batch_size)


def _note_dropped(batch_dropped, strict, path):
    for d in batch_dropped:
        if strict:
            raise InputError('%s: line %d: %s (--strict)' % (path, d.lineno, d.reason))
        print('WARNING: pair dropped, line %d: %s' % (d.lineno, d.reason))


def evaluate_pairs(model, loader, device, softmax=0, strict=False, text_batch_size=64, verbose=True,
                   amp=False, log=0, show_progress=True):
    """local_eval_test.eval_: per batch s1, s2 (two forward calls), RankNet loss; Dev loss is the
    mean of batch means (quirk 13). Dropped pairs are counted and named; strict makes them fatal;
    an evaluation left with no pair is an error, never a NaN metric."""
    model.eval()
    labels, s1_all, s2_all, linenos, dropped = [], [], [], [], []
    total_loss, n_batches = 0.0, 0
    path = getattr(loader.dataset, 'path', 'ranking CSV')
    for batch, batch_dropped in progress(loader, desc='eval pairs', unit='batch', enabled=show_progress):
        _note_dropped(batch_dropped, strict, path)
        dropped.extend(batch_dropped)
        if batch is None:
            continue
        with torch.no_grad(), autocast(device, amp):
            start = time.time()
            pois_feature = pair_text_features(model.align_model, batch.text, device, model.use_norm,
                                              text_batch_size)
            inputs = [t.to(device) for t in (batch.mean_poi_img_vec, batch.poi_text_vec, batch.poi_len)]
            s1 = model(batch.img_1.to(device), pois_feature, *inputs).float()
            s2 = model(batch.img_2.to(device), pois_feature, *inputs).float()
            if verbose:  # upstream prints args.batch_size * 2 even for a short last batch
                print(loader.batch_size * 2, 'costs', time.time() - start)
            if log:
                for lineno, text in zip(batch.lineno, batch.text):
                    print('val', 'line', lineno, 'poi text=', text)
            if softmax:
                s1, s2 = pair_softmax(s1, s2)
            loss = rank_sigmoid_loss(s1, s2, batch.label.to(device))
        total_loss += check_finite(loss.item(), 'evaluation batch %d of %s' % (n_batches + 1, path))
        n_batches += 1
        s1 = s1.cpu().numpy().reshape(-1)  # reshape, not squeeze: a 1-pair batch works (quirk 12)
        s2 = s2.cpu().numpy().reshape(-1)
        if verbose:
            print('val b_preds_1=', s1)
            print('val b_preds_2=', s2)
        s1_all.append(s1)
        s2_all.append(s2)
        labels.extend(batch.label.reshape(-1).tolist())
        linenos.extend(batch.lineno)
    if not n_batches:
        raise InputError('%s: all %d pairs were dropped (missing or unreadable images, bad lines), nothing '
                         'to evaluate; check --image_root' % (path, len(dropped)))
    s1, s2 = np.concatenate(s1_all), np.concatenate(s2_all)
    return PairEvaluation(np.asarray(labels), s1, s2, linenos, dropped, total_loss / n_batches,
                          pairwise_accuracy(labels, s1, s2))
