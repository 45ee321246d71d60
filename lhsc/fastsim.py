"""Fast similarity pass for evaluation: every (image, caption, word) of a tile at once, no autograd.

Reference: `EncoderSimilarity.forward` in lhsc/model.py, upstream's per-caption loop
(model.py:279-318 of LHSC, SGRAF's `EncoderSimilarity.forward`). `scores` takes the reference's
arguments and returns the same (Ni, Nc) float32 matrix; tests/lhsc/test_lhsc_vectorised_similarity.py
pins the two together, and against a float64 evaluation on ill-conditioned cases.

* Padded words are exact zeros, so the SCAN attention's l2norm over a caption's words, TextSA's
  softmax (masked), SAF's L1-normalised gates and SGR's graph softmax (keys masked) equal the
  per-caption versions. BatchNorms use their running statistics (eval mode only).
* |attn @ V| comes from the 36x36 Gram matrix G = V V^T as sqrt(attn^T G attn), so the attended
  context never needs a norm pass; scaling the weights by 1/(|c| + eps) and one product give
  l2norm(context), and (l2norm(c) - q)^2 is one fused pass. The Gram form is only used where it
  is well conditioned: where the context nearly cancels (|c| < TAU * sum_r attn_r |v_r|) its
  float32 rounding error grows like eps / |c|^2 (upstream's direct product: eps / |c|), so those
  words are recomputed from the embeddings in float64 (`_recompute_float64`).
* Matrix products go through `lhsc.gemm` (oneDNN on CPU by default, torch's ops otherwise; both
  IEEE float32). With oneDNN the context, squared difference and projection run image by image,
  so the (words x E) difference stays in cache.
"""
from typing import Any, List, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from lhsc.gemm import TorchGemm
from lhsc.model import l2norm

SMOOTH = 9.0  # upstream's SCAN_attention(smooth=9.0)
TAU = 0.1     # Gram form trusted where |c| >= TAU * sum_r attn_r |v_r|: relative error <~ eps / (2 TAU^2)
PAIRS_F64 = 64  # (image, caption) pairs per float64 recomputation chunk


class ImageSide(NamedTuple):
    """What the pass needs of a tile of images, computed once and reused for every caption chunk."""
    emb: torch.Tensor            # (Ni, 36, E) region embeddings
    gemm: Any                    # the lhsc.gemm products
    glo: torch.Tensor            # (Ni, E) VisualSA global vectors
    gram: torch.Tensor           # (Ni, 36, 36) V V^T
    norms: torch.Tensor          # (Ni, 36, 1) region norms
    tranloc: Any                 # sim_tranloc_w.weight, packed
    tranglo: Any                 # sim_tranglo_w.weight, packed
    regions: Optional[Any]       # gemm.per_image: regions as (Ni*36, E), packed
    regions_t: Optional[List]    # gemm.per_image: Ni x (E, 36), packed
    sgr: Optional[List]          # SGR head: `_sgr_step` of each GraphReasoning


def scores(sim_enc, img_emb, cap_emb, cap_lens, gemm=None, img_glo=None, cap_glo=None, image_side=None):
    """(Ni, Nc) scores of an eval-mode `EncoderSimilarity`, equal to `sim_enc(img_emb, cap_emb, cap_lens)`.

    Optional precomputed pieces (evaluation reuses them across chunks): img_glo / cap_glo from
    `image_globals` / `caption_globals`, image_side from `image_side` (which fixes the products);
    gemm: the lhsc.gemm products (default torch's)."""
    if sim_enc.training:  # BatchNorm batch statistics and dropout: lhsc/fasttrain.py computes those
        raise ValueError('fastsim.scores needs an eval-mode EncoderSimilarity; use lhsc.fasttrain.scores in training')
    with torch.no_grad():
        lens = torch.as_tensor(cap_lens, dtype=torch.int64, device=cap_emb.device)
        cap, word_mask = masked_words(cap_emb, lens)
        side = image_side if image_side is not None else _image_side(sim_enc, img_emb, gemm, img_glo)
        if cap_glo is None:
            cap_glo = caption_globals(sim_enc, cap, lens, gemm=side.gemm)
        sim_glo = torch.pow(side.glo.unsqueeze(1) - cap_glo.unsqueeze(0), 2)             # (Ni, Nc, E)
        sim_glo = side.gemm.linear(sim_glo.view(-1, sim_glo.size(-1)), side.tranglo, sim_enc.sim_tranglo_w.bias)
        sim_glo = l2norm(sim_glo.view(img_emb.size(0), cap.size(0), -1), dim=-1)            # (Ni, Nc, S)
        sim_loc = _local_alignments(sim_enc, side, cap, word_mask)
        if sim_enc.head == 'SGR':
            sim_vec = _sgr(side.sgr, sim_glo, sim_loc, word_mask, side.gemm)
        else:
            sim_vec = _saf(sim_enc.saf, sim_glo, sim_loc, word_mask)
        return sim_enc.sigmoid(sim_enc.sim_eval_w(sim_vec)).squeeze(-1)


def image_globals(sim_enc, img_emb, gemm=None):
    """VisualSA global image vectors (Ni, E); per image in eval mode, so computable once."""
    with torch.no_grad():
        return _self_attention(sim_enc.v_global_w, img_emb, torch.mean(img_emb, 1), None, gemm or TorchGemm)


def caption_globals(sim_enc, cap_emb, cap_lens, gemm=None):
    """TextSA global caption vectors (Nc, E) over each caption's own words."""
    with torch.no_grad():
        lens = torch.as_tensor(cap_lens, dtype=torch.int64, device=cap_emb.device)
        cap, word_mask = masked_words(cap_emb, lens)
        cap_ave = cap.sum(1) / lens.unsqueeze(1).to(cap.dtype)
        return _self_attention(sim_enc.t_global_w, cap, cap_ave, word_mask, gemm or TorchGemm)


def image_side(sim_enc, img_emb, gemm=None, img_glo=None):
    """`ImageSide` of a tile of images: global vectors, 36x36 Gram matrices, region norms and
    (oneDNN) packed region matrices, computed once and reused for every caption chunk."""
    with torch.no_grad():
        return _image_side(sim_enc, img_emb, gemm, img_glo)


def _image_side(sim_enc, img_emb, gemm, img_glo):
    gemm = gemm or TorchGemm
    return ImageSide(
        emb=img_emb, gemm=gemm,
        glo=image_globals(sim_enc, img_emb, gemm) if img_glo is None else img_glo,
        gram=torch.bmm(img_emb, img_emb.transpose(1, 2)),
        norms=torch.linalg.vector_norm(img_emb, dim=-1).unsqueeze(2),
        tranloc=gemm.pack(sim_enc.sim_tranloc_w.weight),
        tranglo=gemm.pack(sim_enc.sim_tranglo_w.weight),
        regions=gemm.pack(img_emb.reshape(-1, img_emb.size(-1))) if gemm.per_image else None,
        regions_t=[gemm.pack(regions.t()) for regions in img_emb] if gemm.per_image else None,
        sgr=[_sgr_step(step, gemm) for step in sim_enc.SGR_module] if sim_enc.head == 'SGR' else None)


def _sgr_step(step, gemm):
    """One GraphReasoning step's products, packed. Its edge logits (x Wq^T + bq)(x Wk^T + bk)^T
    differ from (x A + u) x^T, A = Wq^T Wk, u = Wk^T bq, only by terms constant along each row
    (x Wq^T bk, bq.bk), which the softmax over keys cancels: one S x S product instead of two."""
    wq, wk = step.graph_query_w.weight.double(), step.graph_key_w.weight.double()
    a_t = (wk.t() @ wq).to(step.graph_key_w.weight.dtype)                                    # A^T: x A = x @ A^T.T
    u = (wk.t() @ step.graph_query_w.bias.double()).to(a_t.dtype)
    return gemm.pack(a_t), u, gemm.pack(step.sim_graph_w.weight), step.sim_graph_w.bias


def masked_words(cap_emb, lens):
    """cap_emb cut to the longest caption, padded words set to exact zeros; and the word mask."""
    max_len = int(lens.max())
    word_mask = torch.arange(max_len, device=cap_emb.device)[None, :] < lens[:, None]       # (Nc, L)
    return cap_emb[:, :max_len, :] * word_mask.unsqueeze(-1).to(cap_emb.dtype), word_mask


def _unit_rows(x):
    """In-place l2norm over the last dim (upstream's l2norm: x / (|x| + 1e-8))."""
    return x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).add_(1e-8))


def _linear(module, x, gemm):
    """module(x) for an nn.Linear, through `gemm`."""
    y = gemm.linear(x.reshape(-1, x.size(-1)), gemm.pack(module.weight), module.bias)
    return y.view(*x.shape[:-1], -1)


def _self_attention(module, local, raw_global, mask, gemm):
    """VisualSA / TextSA in eval mode: l2norm(softmax(w_c . (emb_l(x) * emb_g(g)) + b_c) @ x), the
    logits as one product per item without the (B, n, E) elementwise product; emb_* = Linear
    [+ BatchNorm: per-channel affine in eval] + Tanh (Dropout is the identity). mask: valid words."""
    def embed(seq, x):
        y = _linear(seq[0], x, gemm)
        if isinstance(seq[1], nn.BatchNorm1d):
            y = seq[1](y)
        return torch.tanh_(y)
    common = module.embedding_common[0]
    l_emb, g_emb = embed(module.embedding_local, local), embed(module.embedding_global, raw_global)
    weights = torch.bmm(l_emb, (g_emb * common.weight).unsqueeze(2)).squeeze(2) + common.bias
    if mask is not None:
        weights = weights.masked_fill(~mask, float('-inf'))
    weights = torch.softmax(weights, dim=1)
    return l2norm((weights.unsqueeze(2) * local).sum(dim=1), dim=-1)


def _word_region_attention(img_emb, cap, gemm, packed_regions=None):
    """SCAN attention weights (Ni, Nc*L, 36) of every (image, caption word) over the regions.
    Padded words are exact zeros, so the l2norm over a caption's words ignores them.
    packed_regions: gemm.pack(img_emb as (Ni*36, E)) when gemm.per_image."""
    n_img, n_reg, dim = img_emb.shape
    n_cap, max_len = cap.shape[:2]
    if gemm.per_image:  # words x (images*regions) in one product, then into (Ni, words, 36)
        attn = gemm.linear(cap.reshape(n_cap * max_len, dim), packed_regions)
        attn = l2norm(F.leaky_relu(attn.view(n_cap, max_len, n_img, n_reg), 0.1), dim=1)
        attn = torch.softmax(attn * SMOOTH, dim=3)
        return attn.permute(2, 0, 1, 3).reshape(n_img, n_cap * max_len, n_reg)
    attn = torch.matmul(img_emb.reshape(n_img * n_reg, dim), cap.reshape(n_cap * max_len, dim).t())
    attn = l2norm(F.leaky_relu(attn.view(n_img, n_reg, n_cap, max_len), 0.1), dim=3)
    attn = torch.softmax(attn.permute(0, 2, 3, 1) * SMOOTH, dim=3)                          # (Ni, Nc, L, 36)
    return attn.reshape(n_img, n_cap * max_len, n_reg)


def _local_alignments(sim_enc, side, cap, word_mask):
    """l2norm(W((l2norm(attn @ V) - q)^2) + b) (Ni, Nc, L, S), the context norm from the Gram form."""
    img_emb, gemm = side.emb, side.gemm
    attn = _word_region_attention(img_emb, cap, gemm, side.regions)
    n_img, n_words, _ = attn.shape
    n_cap, max_len = cap.shape[:2]
    sq_norm = (torch.bmm(attn, side.gram) * attn).sum(-1)                                # |c|^2 (Ni, words)
    bound = torch.bmm(attn, side.norms).squeeze(2)                                        # >= |c|
    ill = (sq_norm < (TAU * bound) ** 2) & word_mask.reshape(1, -1)
    attn = attn.div_(sq_norm.clamp_(min=0).sqrt_().add_(1e-8).unsqueeze(-1))
    words = cap.reshape(n_words, -1)
    if not gemm.per_image:
        diff = torch.bmm(attn, img_emb).sub_(words.unsqueeze(0))                             # c/|c| - q
        del attn
        sim_loc = _unit_rows(sim_enc.sim_tranloc_w(diff.square_()))
        del diff
    else:
        weight, bias = side.tranloc, sim_enc.sim_tranloc_w.bias
        sim_loc = attn.new_empty(n_img, n_words, bias.numel())
        for i in range(n_img):  # (c/|c| - q)^2 (in one pass), projected, normalised while in cache
            diff = F.mse_loss(gemm.linear(attn[i], side.regions_t[i]), words, reduction='none')
            proj = gemm.linear(diff, weight, bias)
            del diff
            sim_loc[i] = _unit_rows(proj)
        del attn
    if ill.any():
        _recompute_float64(sim_enc.sim_tranloc_w, img_emb, cap, ill, sim_loc)
    return sim_loc.view(n_img, n_cap, max_len, -1)


def _recompute_float64(tranloc, img_emb, cap, ill, sim_loc):
    """Overwrite sim_loc (Ni, Nc*L, S) at the flagged (image, word) entries `ill` with the local
    alignment computed in float64 from the embeddings (attention over the caption's words
    included): where the attended context nearly cancels, float32 rounding anywhere before the
    norm is amplified by 1/|c|, so only a recomputation in higher precision keeps the score
    as accurate as (in fact more than) upstream's float32 loop."""
    n_cap, max_len, _ = cap.shape
    img_idx, word_idx = ill.nonzero(as_tuple=True)
    cap_idx, pos = word_idx // max_len, word_idx % max_len
    pairs, inverse = torch.unique(img_idx * n_cap + cap_idx, return_inverse=True)
    weight, bias = tranloc.weight.double(), tranloc.bias.double()
    for start in range(0, len(pairs), PAIRS_F64):
        chunk = pairs[start:start + PAIRS_F64]
        regions = img_emb[chunk // n_cap].double()                                           # (P, 36, E)
        query = cap[chunk % n_cap].double()                                                  # (P, L, E)
        attn = l2norm(F.leaky_relu(torch.bmm(regions, query.transpose(1, 2)), 0.1), 2)       # (P, 36, L)
        attn = torch.softmax(attn.transpose(1, 2) * SMOOTH, dim=2)                          # (P, L, 36)
        context = torch.bmm(attn, regions)                                                   # (P, L, E)
        sel = (inverse >= start) & (inverse < start + len(chunk))
        p, w = inverse[sel] - start, pos[sel]
        local = torch.pow(l2norm(context[p, w], dim=-1) - query[p, w], 2)
        sim_loc[img_idx[sel], word_idx[sel]] = l2norm(F.linear(local, weight, bias), dim=-1).to(sim_loc.dtype)


def _saf(saf, sim_glo, sim_loc, word_mask):
    """SAF with BatchNorm's running statistics over global (Ni, Nc, S) + local (Ni, Nc, L, S) nodes."""
    bn = saf.bn
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)

    def gate(x):
        return torch.sigmoid((saf.attn_sim_w(x).squeeze(-1) - bn.running_mean) * inv + bn.bias)
    gate_glo = gate(sim_glo)                                                                 # (Ni, Nc)
    gate_loc = gate(sim_loc) * word_mask.unsqueeze(0).to(sim_loc.dtype)                      # (Ni, Nc, L)
    norm = gate_glo + gate_loc.sum(-1) + 1e-8                                                # l1norm (gates > 0)
    pooled = gate_glo.unsqueeze(-1) * sim_glo + torch.matmul(gate_loc.unsqueeze(-2), sim_loc).squeeze(-2)
    return l2norm(pooled / norm.unsqueeze(-1), dim=-1)


def _sgr(steps, sim_glo, sim_loc, word_mask, gemm):
    """SGR graph reasoning over nodes (global + words) per pair; padded words masked as keys.
    steps: `_sgr_step` of each GraphReasoning."""
    nodes = torch.cat([sim_glo.unsqueeze(2), sim_loc], 2)                                    # (Ni, Nc, L+1, S)
    key_mask = torch.cat([torch.ones_like(word_mask[:, :1]), word_mask], 1).unsqueeze(0).unsqueeze(-2)
    last = len(steps) - 1
    for k, (a_t, u, graph_w, graph_b) in enumerate(steps):
        # the last step's output is read at the global node only: only its row is computed there
        rows = nodes if k < last else nodes[:, :, :1]
        query = gemm.linear(rows.reshape(-1, rows.size(-1)), a_t, u).view(rows.shape)
        edge = torch.matmul(query, nodes.transpose(-1, -2)).masked_fill_(~key_mask, float('-inf'))
        edge = torch.matmul(torch.softmax(edge, dim=-1), nodes).reshape(-1, rows.size(-1))
        nodes = torch.relu_(gemm.linear(edge, graph_w, graph_b)).view(rows.shape)
    return nodes[:, :, 0, :]
