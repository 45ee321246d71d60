"""Validation: score every query's candidate pool, NDCG@5 per query, mean over queries
(upstream HSL/evaluation.py). `evaluate` encodes each product once per chunk of queries;
`evaluate_naive` keeps upstream's per-query loop (reference for tests and the benchmark)."""
import logging
import time

import numpy as np
import torch

from common.runtime import autocast
from hsl.data import encode_query_batch, product_batch
from hsl.metric import K, NDCGScorer, cal_ndcg, random_ndcg
from hsl.model import cal_scores, cal_scores2
from hsl.records import Scores
from hsl.utils import AverageMeter

PRODUCT_BATCH = 64


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
    gdprods = answer.get(query_id)
    if gdprods is None:
        logging.warning('WARNING: query %s is not in the answer file; counted as nDCG 0', query_id)
        gdprods = []
    result.per_query[query_id] = cal_ndcg(scores, pool, gdprods, scorer, query_id)
    order = np.argsort(scores)[::-1]
    result.rankings[query_id] = [int(pool[j]) for j in order]
    result.scores[query_id] = scores
    result.pools[query_id] = list(pool)
    result.sort_keys[query_id] = sort_key
    relevant = sum(1 for p in pool if int(p) in gdprods)
    result.random[query_id] = random_ndcg(len(pool), relevant, K)


def _finish(result, out_path, logging):
    """--score_to: upstream's Scores CSV, rows in upstream's order."""
    if out_path is None:
        return
    record = Scores()
    for query_id in result.upstream_order():
        for pid, score in zip(result.pools[query_id], result.scores[query_id]):
            record.add_item(query_id, pid, score.item())
    record.dump(out_path)
    logging('Scores dumped to {}'.format(out_path))


def _to_numpy(t):
    return t.float().cpu().numpy()


def encode_texts(model, vocab, texts, return_lengths=False):
    """The four text embeddings (each (Q, e), float32) of a list of query strings."""
    ids, lengths = encode_query_batch(vocab, texts)
    with autocast(model.device, model.amp):
        embs = model.net.encode_text(ids.to(model.device), lengths.to(model.device))
    embs = [e.float() for e in embs]
    return (embs, lengths) if return_lengths else embs


def encode_products(model, prods, product_ids, top_k, batch_size=PRODUCT_BATCH):
    """Image embeddings of each product once: x1, x2 (P, B, e) zero-padded, x3, x4 (P, e), num_boxes."""
    levels, all_boxes = [[], [], [], []], []
    for b in range(0, len(product_ids), batch_size):
        images, num_boxes = product_batch(prods, product_ids[b:b + batch_size], top_k)
        with autocast(model.device, model.amp):
            embs = model.net.encode_images(images.to(model.device), num_boxes.to(model.device))
        for level, emb in zip(levels, embs):
            level.append(emb.float())
        all_boxes.append(num_boxes)
    width = max(e.size(1) for e in levels[0])
    for level in (0, 1):  # object-level embeddings: pad boxes to one width
        levels[level] = [torch.nn.functional.pad(e, (0, 0, 0, width - e.size(1))) for e in levels[level]]
    return [torch.cat(level) for level in levels] + [torch.cat(all_boxes).to(model.device)]


def score_pool(model, text, q, products, rows):
    """Upstream's eval score of query q (row of `text`) against products[rows], numpy float32."""
    x1, x2, x3, x4, num_boxes = products
    nb = num_boxes[rows]
    levels = (cal_scores(x1[rows], text[0][q:q + 1], nb, model.score_agg, model.fix_topk)[0],
              cal_scores(x2[rows], text[1][q:q + 1], nb, model.score_agg, model.fix_topk)[0],
              cal_scores2(x3[rows], text[2][q:q + 1])[0],
              cal_scores2(x4[rows], text[3][q:q + 1])[0])
    return combine_levels(*[_to_numpy(s) for s in levels])


@torch.no_grad()
def evaluate(model, dataset, answer, scorer=None, log_step=50, logging=print, out_path=None,
             chunk=128, batch_size=4):
    """Fast path: per chunk of queries, encode texts once and each distinct product once.
    `batch_size` is upstream's eval batch (4): it only fixes the order of the final mean."""
    scorer = scorer or NDCGScorer(K)
    result = EvalResult()
    model.val_start()
    queries = dataset.queries
    batch_time, end = AverageMeter(), time.time()
    n_chunks = (len(queries) + chunk - 1) // chunk
    for c, start in enumerate(range(0, len(queries), chunk)):
        items = [queries(i) for i in range(start, min(start + chunk, len(queries)))]
        text, lengths = encode_texts(model, dataset.vocab, [text for (_, text), _ in items],
                                     return_lengths=True)
        distinct = list(dict.fromkeys(pid for _, pool in items for pid in pool))
        position = {pid: i for i, pid in enumerate(distinct)}
        products = encode_products(model, dataset.prods, distinct, dataset.top_k)
        for q, ((query_id, _), pool) in enumerate(items):
            rows = torch.tensor([position[pid] for pid in pool], device=model.device)
            scores = score_pool(model, text, q, products, rows)
            i = start + q
            record_query(result, query_id, pool, scores, answer, scorer,
                         (i // batch_size, -int(lengths[q]), i))
        batch_time.update(time.time() - end)
        end = time.time()
        if c % max(1, log_step * 4 // chunk) == 0:
            logging('Eval: [{0}/{1}]\tTime {batch_time.val:.3f} ({batch_time.avg:.3f})\t'
                    .format(c, n_chunks, batch_time=batch_time))
    _finish(result, out_path, logging)
    return result


@torch.no_grad()
def evaluate_naive(model, data_loader, answer, scorer=None, log_step=50, logging=print,
                   out_path=None):
    """Upstream's loop: for each query, repeat its ids over the pool and encode the whole pool."""
    scorer = scorer or NDCGScorer(K)
    result = EvalResult()
    model.val_start()
    batch_time, end = AverageMeter(), time.time()
    for index, (padded_images, pool_sizes, num_boxess, prodss, queries, lengths, query_ids, _) \
            in enumerate(data_loader):
        for i, size in enumerate(pool_sizes):
            imgs = padded_images[i, :size, :, :]
            query = queries[i].view(1, -1).expand(imgs.size(0), -1)
            lens = lengths[i].view(1).expand(imgs.size(0))
            embs = model.forward_emb(imgs, num_boxess[i], query, lens, no_grad=True)
            embs = [e.float() for e in embs]
            levels = [s[0] for s in model.score_levels(embs, num_boxess[i])]
            scores = combine_levels(*[_to_numpy(s) for s in levels])
            record_query(result, query_ids[i], prodss[i], scores, answer, scorer, (result.num_queries,))
        batch_time.update(time.time() - end)
        end = time.time()
        if index % log_step == 0:
            logging('Eval: [{0}/{1}]\tTime {batch_time.val:.3f} ({batch_time.avg:.3f})\t'
                    .format(index, len(data_loader), batch_time=batch_time))
    _finish(result, out_path, logging)
    return result
