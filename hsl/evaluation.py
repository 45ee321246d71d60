"""Validation as upstream does it (HSL/evaluation.py): for each query, encode its whole candidate
pool with the query repeated, score the four levels, NDCG@5 per query, mean over queries.

This is the reference path. `hsl/evaluation_fast.py` computes the same numbers faster behind the
same `evaluate` signature; main.py picks one with `--eval_naive` (this one) or not (the fast one).
The result object, the level weights and the `--score_to` writer below are shared by both.
"""
import logging as _logging
import time

import numpy as np
import torch

from common.errors import InputError
from common.progress import progress
from common.safeio import NonFiniteError
from hsl.metric import K, NDCGScorer, cal_ndcg, random_ndcg
from hsl.records import Scores
from hsl.utils import AverageMeter


class EvalResult(object):
    """nDCG (upstream's mean), per-query values, scores and rankings (for the official scorer)."""

    def __init__(self):
        self.per_query = {}
        self.rankings = {}
        self.random = {}
        self.scores = {}
        self.pools = {}
        self.sort_keys = {}

    @property
    def num_queries(self):
        return len(self.per_query)

    def upstream_order(self):
        """Query ids in the order upstream visits them: batches of 4 queries, each batch sorted by
        query length (collate_fn_eval). Summing in this order reproduces upstream's float exactly."""
        return sorted(self.sort_keys, key=self.sort_keys.get)

    @property
    def nDCG(self):
        meter = AverageMeter()  # plain running mean, the value upstream returns
        for query_id in self.upstream_order():
            meter.update(self.per_query[query_id])
        return meter.avg

    @property
    def random_nDCG(self):
        return float(np.mean(list(self.random.values()))) if self.random else 0.0


def combine_levels(scores1, scores2, scores3, scores4):
    """Upstream evaluation.py:46, numpy float32, left to right."""
    return scores1 + 0.5 * scores2 + scores3 + scores4 * 0.5


def record_query(result, query_id, pool, scores, answer, scorer, sort_key):
    if not np.isfinite(scores).all():
        raise NonFiniteError('query %s: non-finite scores (NaN/inf): the checkpoint weights or the box '
                             'features hold NaN/inf values (or --score_agg top<k> reads k=0: see '
                             '--fix_topk); no nDCG is reported' % query_id)
    gdprods = answer.get(query_id)
    if gdprods is None:
        _logging.warning('WARNING: query %s is not in the answer file; counted as nDCG 0', query_id)
        gdprods = []
    result.per_query[query_id] = cal_ndcg(scores, pool, gdprods, scorer, query_id)
    order = np.argsort(scores)[::-1]
    result.rankings[query_id] = [int(pool[j]) for j in order]
    result.scores[query_id] = scores
    result.pools[query_id] = list(pool)
    result.sort_keys[query_id] = sort_key
    relevant = sum(1 for p in pool if int(p) in gdprods)
    result.random[query_id] = random_ndcg(len(pool), relevant, K)


def check_not_empty(num_queries, where='the valid split'):
    """An empty evaluation set is an error, never an nDCG of 0."""
    if num_queries == 0:
        raise InputError('%s has no queries: nothing to evaluate. Check the parsed valid files '
                         '(re-run parse_dataset.py on a valid.tsv with rows)' % where)


def finish(result, out_path, logging):
    """--score_to: upstream's Scores CSV, rows in upstream's order."""
    if out_path is None:
        return
    record = Scores()
    for query_id in result.upstream_order():
        for pid, score in zip(result.pools[query_id], result.scores[query_id]):
            record.add_item(query_id, pid, score.item())
    record.dump(out_path)
    logging('Scores dumped to {}'.format(out_path))


def to_numpy(t):
    return t.float().cpu().numpy()


@torch.no_grad()
def evaluate(model, data_loader, answer, scorer=None, log_step=50, logging=print, out_path=None,
             show_progress=True):
    """Upstream's loop: for each query, repeat its ids over the pool and encode the whole pool."""
    check_not_empty(len(data_loader.dataset))
    scorer = scorer or NDCGScorer(K)
    result = EvalResult()
    model.val_start()
    batch_time, end = AverageMeter(), time.time()
    batches = progress(data_loader, desc='eval (reference)', unit='batch', enabled=show_progress)
    for index, (padded_images, pool_sizes, num_boxess, prodss, queries, lengths, query_ids, _) \
            in enumerate(batches):
        for i, size in enumerate(pool_sizes):
            imgs = padded_images[i, :size, :, :]
            query = queries[i].view(1, -1).expand(imgs.size(0), -1)
            lens = lengths[i].view(1).expand(imgs.size(0))
            embs = model.forward_emb(imgs, num_boxess[i], query, lens, no_grad=True)
            embs = [e.float() for e in embs]
            levels = [s[0] for s in model.score_levels(embs, num_boxess[i])]
            scores = combine_levels(*[to_numpy(s) for s in levels])
            record_query(result, query_ids[i], prodss[i], scores, answer, scorer, (result.num_queries,))
        batch_time.update(time.time() - end)
        end = time.time()
        if index % log_step == 0:
            logging('Eval: [{0}/{1}]\tTime {batch_time.val:.3f} ({batch_time.avg:.3f})\t'
                    .format(index, len(data_loader), batch_time=batch_time))
    finish(result, out_path, logging)
    return result


evaluate_naive = evaluate  # the name this loop had before the fast path moved out
