"""Local-level cross attention scores (upstream model.py:50-96 and 311-403), in three implementations.

Every local score is one pattern: for a query set Q_a (q vectors) and a context set C_b (s vectors),
attend each query vector over the context (`func_attention`), then average over the query vectors
the cosine between the query vector and its attended context:
    t2i  query = caption words, context = image regions   cosine in float64 (model.py:327)
    i2t  query = image regions, context = caption words   cosine in float32 (model.py:351)
    c2b  query = CNN regions,   context = BoVW regions    cosine in float32 (model.py:373)
    b2c  query = BoVW regions,  context = CNN regions     cosine in float64 (model.py:398)

* `pair_scores_reference`: upstream's loop over one side (captions / BoVW images), each item
  repeated against the whole other side. Straightforward and slow; the ground truth of the tests
  and the benchmark.
* `pair_scores_exact`: upstream's operations in upstream's order, batched over all pairs of equal
  length (no padding ever enters a sum); chunked to bound memory. Bit-equal to `reference`.
* `pair_scores_fast`: the same function rewritten on the (s x q) dot products only:
  q.wc = sum_s P_ts A_st and |wc|^2 = P G P^T with G the context Gram matrix, so the (q x d)
  attended vectors are never materialised. Differentiable and light; the default for training and
  evaluation (`test_local.py --attention exact|reference` select the others). Equal to the others
  to float32 rounding; in evaluation each distinct caption is scored once (`dedupe`), so duplicate
  captions tie bit-exactly as in upstream's loop.
"""
import torch
import torch.nn.functional as F

EPS = 1e-8


def l2norm(X, dim, eps=EPS):
    """Upstream model.py:12: eps is added to X *before* squaring (not SCAN's |X| + eps)."""
    if X.dtype in (torch.float16, torch.bfloat16):  # under --amp: eps underflows, 0/0 on padded steps
        X = X.float()
    norm = torch.pow(X + eps, 2).sum(dim=dim, keepdim=True).sqrt()
    return torch.div(X, norm)


def cosine_similarity(x1, x2, dim=1, eps=EPS):
    """Upstream model.py:17-22 without the final .squeeze() (it crashed on one-image shards)."""
    w12 = torch.sum(x1 * x2, dim)
    w1 = torch.norm(x1, 2, dim)
    w2 = torch.norm(x2, 2, dim)
    return w12 / (w1 * w2).clamp(min=eps)


def normalize_raw_attention(attn, raw_feature_norm):
    """Normalise (…, sourceL, queryL) raw attention over the query axis (upstream model.py:63-77)."""
    if raw_feature_norm == "softmax":
        return F.softmax(attn, dim=-1)
    if raw_feature_norm == "l2norm":
        return l2norm(attn, -1)
    if raw_feature_norm == "clipped_l2norm":
        return l2norm(F.leaky_relu(attn, 0.1), -1)
    if raw_feature_norm == "no_norm":
        return attn
    raise ValueError("unknown first norm type:", raw_feature_norm)


def func_attention(query, context, raw_feature_norm, smooth):
    """query (n, queryL, d), context (n, sourceL, d) -> attended context (n, queryL, d), attn."""
    attn = torch.bmm(context, torch.transpose(query, 1, 2))          # (n, sourceL, queryL)
    attn = normalize_raw_attention(attn, raw_feature_norm)
    attn = torch.transpose(attn, 1, 2).contiguous()                  # (n, queryL, sourceL)
    attn = F.softmax(attn * smooth, dim=2)
    attnT = torch.transpose(attn, 1, 2).contiguous()                 # (n, sourceL, queryL)
    weighted = torch.bmm(torch.transpose(context, 1, 2), attnT)      # (n, d, queryL), as upstream
    return torch.transpose(weighted, 1, 2), attnT


# --------------------------------------------------------------------------- reference (upstream loop)
def pair_scores_reference(queries, qlens, contexts, slens, raw_feature_norm, smooth, cos_double,
                          loop='query'):
    """(n_q, n_c) scores the way upstream computes them: a Python loop over one side (the captions,
    or the BoVW images), each item repeated against the whole other side (which has one length)."""
    sims = []
    for k in range(queries.size(0) if loop == 'query' else contexts.size(0)):
        if loop == 'query':
            qry = queries[k, :int(qlens[k])].unsqueeze(0).repeat(contexts.size(0), 1, 1)
            ctx = contexts[:, :int(slens[0])]
        else:
            ctx = contexts[k, :int(slens[k])].unsqueeze(0).repeat(queries.size(0), 1, 1)
            qry = queries[:, :int(qlens[0])]
        weighted, _ = func_attention(qry, ctx, raw_feature_norm, smooth)
        if cos_double:
            sim = cosine_similarity(qry.double(), weighted.double(), dim=2)
        else:
            sim = cosine_similarity(qry, weighted, dim=2)
        sims.append(sim.mean(dim=1))
    sims = torch.stack(sims).double()
    return sims if loop == 'query' else sims.t()


# --------------------------------------------------------------------------- exact, batched by length
def pair_scores_exact(queries, qlens, contexts, slens, raw_feature_norm, smooth, cos_double,
                      max_elements=1 << 23):
    """(n_q, n_c) float64 scores with upstream's operation order, batched over equal-length pairs."""
    qlens = [int(x) for x in qlens]
    slens = [int(x) for x in slens]
    out = torch.zeros(queries.size(0), contexts.size(0), dtype=torch.float64, device=queries.device)
    d = queries.size(2)
    for q_len in sorted(set(qlens)):
        q_idx = torch.tensor([i for i, n in enumerate(qlens) if n == q_len], device=queries.device)
        for s_len in sorted(set(slens)):
            s_idx = torch.tensor([j for j, n in enumerate(slens) if n == s_len], device=queries.device)
            ctx = contexts[s_idx, :s_len]
            chunk = max(1, max_elements // max(1, len(s_idx) * max(q_len, s_len) * d))
            for start in range(0, len(q_idx), chunk):
                rows = q_idx[start:start + chunk]
                qry = queries[rows, :q_len]
                n_a, n_b = len(rows), len(s_idx)
                q_pairs = qry.unsqueeze(1).expand(n_a, n_b, q_len, d).reshape(-1, q_len, d)
                c_pairs = ctx.unsqueeze(0).expand(n_a, n_b, s_len, d).reshape(-1, s_len, d)
                weighted, _ = func_attention(q_pairs, c_pairs, raw_feature_norm, smooth)
                if cos_double:
                    sim = cosine_similarity(q_pairs.double(), weighted.double(), dim=2)
                else:
                    sim = cosine_similarity(q_pairs, weighted, dim=2)
                sim = sim.mean(dim=1).double().view(n_a, n_b)
                out[rows.unsqueeze(1), s_idx.unsqueeze(0)] = sim
    return out


# --------------------------------------------------------------------------- fast, differentiable
def length_mask(lengths, size, device):
    lengths = torch.as_tensor([int(x) for x in lengths], device=device)
    return torch.arange(size, device=device).unsqueeze(0) < lengths.unsqueeze(1)


def pair_scores_fast(queries, qlens, contexts, slens, raw_feature_norm, smooth, cos_double):
    """(n_q, n_c) float64 scores from the (s x q) dot products and the context Gram matrices."""
    n_q, q, _ = queries.shape
    n_c, s, _ = contexts.shape
    qmask = length_mask(qlens, q, queries.device)                       # (n_q, q)
    smask = length_mask(slens, s, queries.device)                       # (n_c, s)
    # all (query vector, context vector) dot products in one 2-D GEMM
    raw = torch.mm(queries.reshape(n_q * q, -1), contexts.reshape(n_c * s, -1).t())
    raw = raw.view(n_q, q, n_c, s).permute(0, 2, 3, 1)                   # (n_q, n_c, s, q)
    qm = qmask[:, None, None, :]
    if raw_feature_norm in ("l2norm", "clipped_l2norm"):
        x = F.leaky_relu(raw, 0.1) if raw_feature_norm == "clipped_l2norm" else raw
        sq = torch.where(qm, torch.pow(x + EPS, 2), torch.zeros((), dtype=x.dtype, device=x.device))
        attn = x / sq.sum(dim=-1, keepdim=True).sqrt()
    elif raw_feature_norm == "softmax":
        attn = F.softmax(raw.masked_fill(~qm, float('-inf')), dim=-1)
    elif raw_feature_norm == "no_norm":
        attn = raw
    else:
        raise ValueError("unknown first norm type:", raw_feature_norm)
    logits = (attn.transpose(2, 3) * smooth).masked_fill(~smask[None, :, None, :], float('-inf'))
    weights = F.softmax(logits, dim=-1)                                  # (n_q, n_c, q, s)
    if cos_double:
        weights, raw, contexts, queries = weights.double(), raw.double(), contexts.double(), queries.double()
    gram = torch.matmul(contexts, contexts.transpose(1, 2))              # (n_c, s, s)
    dot = (weights * raw.transpose(2, 3)).sum(dim=-1)                    # q . wc      (n_q, n_c, q)
    # |wc|^2 = w G w^T: one GEMM per context item over all (query vector) rows
    w_by_ctx = weights.permute(1, 0, 2, 3).reshape(n_c, n_q * q, s)
    wg = torch.bmm(w_by_ctx, gram).view(n_c, n_q, q, s).permute(1, 0, 2, 3)
    wc_sq = (wg * weights).sum(dim=-1).clamp(min=0)
    q_norm = torch.linalg.vector_norm(queries, dim=-1).unsqueeze(1)      # (n_q, 1, q)
    cos = dot / (q_norm * wc_sq.sqrt()).clamp(min=EPS)
    cos = torch.where(qmask[:, None, :], cos, torch.zeros((), dtype=cos.dtype, device=cos.device))
    n_valid = qmask.sum(dim=1, keepdim=True).to(cos.dtype)
    return (cos.sum(dim=-1) / n_valid).double()


IMPLEMENTATIONS = {'reference': pair_scores_reference, 'exact': pair_scores_exact, 'fast': pair_scores_fast}


def unique_captions(captions, cap_lens):
    """Distinct (caption features, length) rows and the index of each caption among them."""
    lens = torch.as_tensor([int(n) for n in cap_lens], dtype=captions.dtype, device=captions.device)
    rows = torch.cat([captions.reshape(captions.size(0), -1), lens.unsqueeze(1)], dim=1)
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return uniq[:, :-1].view(-1, *captions.shape[1:]), [int(n) for n in uniq[:, -1]], inverse


def local_scores(images, captions, cap_lens, raw_feature_norm, smooth, impl='exact', dedupe=False):
    """(n_img, n_cap) float64 t2i + i2t scores (upstream MMHSE_local.forward_score).

    dedupe=True (evaluation) scores each distinct caption once and copies the column to its
    duplicates: identical captions then get bit-identical scores, as upstream's per-caption loop
    gave them, whatever the kernels do, so the tie order of the ranking is upstream's.
    """
    if dedupe:
        uniq, uniq_lens, inverse = unique_captions(captions, cap_lens)
        if uniq.size(0) < captions.size(0):
            return local_scores(images, uniq, uniq_lens, raw_feature_norm, smooth, impl)[:, inverse]
    fn = IMPLEMENTATIONS[impl]
    loop = {'loop': 'context'} if impl == 'reference' else {}
    img_lens = [images.size(1)] * images.size(0)
    t2i = fn(captions, cap_lens, images, img_lens, raw_feature_norm, smooth, cos_double=True).t()
    i2t = fn(images, img_lens, captions, cap_lens, raw_feature_norm, smooth, cos_double=False, **loop)
    return t2i + i2t


def cross_region_scores(cnn, bovw, raw_feature_norm, smooth, impl='exact', n_p=9):
    """(n_cnn, n_bovw) float64 c2b + b2c scores (upstream forward_score_cb; n_p=9 hard-coded)."""
    fn = IMPLEMENTATIONS[impl]
    loop = {'loop': 'context'} if impl == 'reference' else {}
    bovw = bovw[:, :n_p]
    c_lens = [cnn.size(1)] * cnn.size(0)
    b_lens = [bovw.size(1)] * bovw.size(0)
    c2b = fn(cnn, c_lens, bovw, b_lens, raw_feature_norm, smooth, cos_double=False, **loop)
    b2c = fn(bovw, b_lens, cnn, c_lens, raw_feature_norm, smooth, cos_double=True).t()
    return c2b + b2c
