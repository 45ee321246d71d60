"""Fast validation: the same numbers as `hsl.evaluation.evaluate` (upstream's per-query loop),
computed by encoding texts once per chunk of queries and each distinct product once per chunk.

Implementations:
* reference (`hsl/evaluation.py`): upstream's loop; every query re-encodes its whole pool with
  the query repeated over it. Text and image encoders never interact, so the repeat is wasted.
* fast (here): per chunk of `chunk` queries, the texts are encoded in one batch and the chunk's
  distinct products in batches of PRODUCT_BATCH; each query's pool is then scored from those
  embeddings. Scores agree with the reference to ~1e-6 (float32, other batch shapes); the mean
  is summed in upstream's query order, so the nDCG float is the same bit for bit.
Both take the same arguments; main.py chooses with `--eval_naive`. Pinned by
tests/hsl/test_hsl_eval.py::test_fast_evaluation_equals_reference_and_upstream.
"""
import time
from collections import namedtuple

import torch

from common.progress import progress
from common.runtime import autocast
from hsl.data import encode_query_batch, product_batch
from hsl.evaluation import EvalResult, check_not_empty, combine_levels, finish, record_query, to_numpy
from hsl.metric import K, NDCGScorer
from hsl.model import cal_scores, cal_scores2
from hsl.utils import AverageMeter

PRODUCT_BATCH = 64
DEFAULT_CHUNK = 128

# the four image embeddings of a set of products: object level x1 (deep), x2 (shallow), each
# (P, B, e) zero-padded over boxes; image level x3, x4 (P, e); and num_boxes (P)
ProductEmbeddings = namedtuple('ProductEmbeddings', 'x1 x2 x3 x4 num_boxes')


def encode_texts(model, vocab, texts, return_lengths=False):
    """The four text embeddings (each (Q, e), float32) of a list of query strings."""
    ids, lengths = encode_query_batch(vocab, texts)
    with autocast(model.device, model.amp):
        embs = model.net.encode_text(ids.to(model.device), lengths.to(model.device))
    embs = [e.float() for e in embs]
    return (embs, lengths) if return_lengths else embs


def encode_products(model, prods, product_ids, top_k, batch_size=PRODUCT_BATCH, show_progress=False):
    """ProductEmbeddings of each product, encoded once, in the order of `product_ids`."""
    levels, all_boxes = [[], [], [], []], []
    starts = progress(range(0, len(product_ids), batch_size), desc='encode products', unit='batch',
                      enabled=show_progress)
    for b in starts:
        images, num_boxes = product_batch(prods, product_ids[b:b + batch_size], top_k)
        with autocast(model.device, model.amp):
            embs = model.net.encode_images(images.to(model.device), num_boxes.to(model.device))
        for level, emb in zip(levels, embs):
            level.append(emb.float())
        all_boxes.append(num_boxes)
    width = max(e.size(1) for e in levels[0])
    for level in (0, 1):  # object-level embeddings: pad boxes to one width
        levels[level] = [torch.nn.functional.pad(e, (0, 0, 0, width - e.size(1))) for e in levels[level]]
    return ProductEmbeddings(*[torch.cat(level) for level in levels],
                             num_boxes=torch.cat(all_boxes).to(model.device))


def score_pool(model, text, q, products, rows):
    """Upstream's eval score of query q (row of `text`) against products[rows], numpy float32."""
    x1, x2, x3, x4, num_boxes = products
    nb = num_boxes[rows]
    levels = (cal_scores(x1[rows], text[0][q:q + 1], nb, model.score_agg, model.fix_topk)[0],
              cal_scores(x2[rows], text[1][q:q + 1], nb, model.score_agg, model.fix_topk)[0],
              cal_scores2(x3[rows], text[2][q:q + 1])[0],
              cal_scores2(x4[rows], text[3][q:q + 1])[0])
    return combine_levels(*[to_numpy(s) for s in levels])


@torch.no_grad()
def evaluate(model, data_loader, answer, scorer=None, log_step=50, logging=print, out_path=None,
             show_progress=True, chunk=DEFAULT_CHUNK):
    """`hsl.evaluation.evaluate` computed per chunk of queries. Only the loader's dataset and
    batch size are used: the batch size (upstream: 4) fixes the order of the final mean."""
    dataset = data_loader.dataset
    batch_size = data_loader.batch_size
    queries = dataset.queries
    check_not_empty(len(queries))
    scorer = scorer or NDCGScorer(K)
    result = EvalResult()
    model.val_start()
    batch_time, end = AverageMeter(), time.time()
    n_chunks = (len(queries) + chunk - 1) // chunk
    starts = progress(range(0, len(queries), chunk), desc='eval', unit='chunk', total=n_chunks,
                      enabled=show_progress)
    for c, start in enumerate(starts):
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
    finish(result, out_path, logging)
    return result
