"""Fast similarity head for training: upstream's per-caption loop regrouped by caption length, light on memory.

Reference: `EncoderSimilarity.forward` in lhsc/model.py (upstream model.py:279-318), differentiable.
`scores(sim_enc, img_emb, cap_emb, cap_lens)` takes its arguments and returns the same (Ni, Nc)
scores, BatchNorm running statistics and gradients (tests/lhsc/test_lhsc_vectorised_similarity.py,
tests/lhsc/test_lhsc_train_step.py against the original code).

* Captions of equal length are scored together against all images: no word is padded, so every
  step is upstream's operation on a larger batch (no masks). TextSA's dropout masks are drawn
  caption by caption in upstream's order (`caption_globals`): with dropout on, the scores equal
  upstream's loop under the same seed. SAF's BatchNorm keeps each caption's
  own statistics (upstream calls it once per caption over Ni x (n+1) values), and its running
  statistics are updated caption by caption in the batch's caption order.
* The local alignment l2norm(W((l2norm(attn @ V) - q)^2) + b), the bulk of the work, is one
  autograd Function (`LocalAlignment`): forward runs it a few images at a time and keeps its
  inputs, its (Ni, Nw, S) output and the projections' norms; backward recomputes the (rows x E)
  context and difference per chunk. Upstream's loop keeps about three (Ni, n, E) tensors per
  caption for backward (2.4 GB at batch 128, E 1024), this keeps none, and its elementwise passes
  run on chunks of CHUNK_ROWS rows. Its large products go through `lhsc.gemm` (oneDNN for float32
  on CPU, torch's ops otherwise; both IEEE float32).
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F

from common.runtime import all_gather_cat
from lhsc import gemm as gemms
from lhsc.model import l1norm, l2norm

SMOOTH = 9.0      # upstream's SCAN_attention(smooth=9.0)
CHUNK_ROWS = 1024  # (image, word) rows per LocalAlignment chunk (4 MiB per (rows x E) tensor; fastest here)
EPS = 1e-8        # upstream's l2norm eps


def scores(sim_enc, img_emb, cap_emb, cap_lens):
    """(Ni, Nc) scores of `EncoderSimilarity` (any mode), differentiable; equal to sim_enc(...)."""
    n_img, n_cap = img_emb.size(0), cap_emb.size(0)
    img_glo = sim_enc.v_global_w(img_emb, torch.mean(img_emb, 1))   # upstream: images before captions
    rows = cap_emb.unbind(0)  # one backward op for every caption's words (not a full-size gradient per slice)
    cap_glo_all = caption_globals(sim_enc.t_global_w, rows, [int(n) for n in cap_lens])
    groups = OrderedDict()
    for j, n in enumerate(cap_lens):
        groups.setdefault(int(n), []).append(j)
    blocks, order, stats = [], [], []
    for n_word, idx in groups.items():
        cap = torch.stack([rows[j][:n_word] for j in idx])                                   # (Nb, n, E)
        cap_glo = torch.cat([cap_glo_all[j] for j in idx])
        sim_glo = l2norm(sim_enc.sim_tranglo_w(torch.pow(img_glo.unsqueeze(1) - cap_glo.unsqueeze(0), 2)), dim=-1)
        attn = word_region_attention(img_emb, cap)                                            # (Ni, Nb*n, 36)
        sim_loc = local_alignment(attn, img_emb, cap.reshape(-1, cap.size(-1)),
                                  sim_enc.sim_tranloc_w).view(n_img, len(idx), n_word, -1)
        sim_emb = torch.cat([sim_glo.unsqueeze(2), sim_loc], 2)                               # (Ni, Nb, n+1, S)
        if sim_enc.head == 'SGR':
            nodes = sim_emb.view(n_img * len(idx), n_word + 1, -1)
            for step in sim_enc.SGR_module:
                nodes = step(nodes)
            sim_vec = nodes[:, 0, :].view(n_img, len(idx), -1)
        else:
            sim_vec, stat = saf_per_caption(sim_enc.saf, sim_emb)
            stats.append(stat)
        blocks.append(sim_enc.sigmoid(sim_enc.sim_eval_w(sim_vec)).squeeze(-1))               # (Ni, Nb)
        order.extend(idx)
    inverse = torch.empty(n_cap, dtype=torch.int64)
    inverse[torch.as_tensor(order)] = torch.arange(n_cap)
    inverse = inverse.to(img_emb.device)
    if stats and stats[0] is not None:
        mean, var, count = (torch.cat(s).index_select(0, inverse) for s in zip(*stats))
        update_running_stats(sim_enc.saf, mean, var, count)
    return torch.cat(blocks, 1).index_select(1, inverse)


def caption_globals(text_sa, rows, lens):
    """TextSA (model.TextSA.forward) of each caption over its own words, as a list of (1, E).
    Its two projections run once over all captions' words; the dropout masks are then drawn
    caption by caption, local before global, as upstream's loop calls TextSA: the same masks."""
    lin_l, act_l, drop_l = text_sa.embedding_local
    lin_g, act_g, drop_g = text_sa.embedding_global
    caps = [rows[j][:n] for j, n in enumerate(lens)]
    means = torch.stack([cap.mean(0) for cap in caps])                                        # (Nc, E)
    local = act_l(lin_l(torch.cat(caps))).split(lens)                                         # Nc x (n, E)
    glob = act_g(lin_g(means)).unbind(0)
    out = []
    for cap, l_emb, g_emb in zip(caps, local, glob):
        l_emb, g_emb = drop_l(l_emb.unsqueeze(0)), drop_g(g_emb.unsqueeze(0))                # (1, n, E), (1, E)
        weights = torch.softmax(text_sa.embedding_common(l_emb * g_emb.unsqueeze(1)).squeeze(2), dim=1)
        out.append(l2norm((weights.unsqueeze(2) * cap.unsqueeze(0)).sum(dim=1), dim=-1))
    return out


def word_region_attention(img_emb, cap):
    """SCAN attention (upstream SCAN_attention's weights) of equal-length captions (Nb, n, E) over
    the regions of every image (Ni, 36, E): (Ni, Nb*n, 36); the l2norm is over each caption's words."""
    n_img, n_reg, dim = img_emb.shape
    n_cap, n_word = cap.shape[:2]
    attn = torch.matmul(img_emb.reshape(n_img * n_reg, dim), cap.reshape(n_cap * n_word, dim).t())
    attn = l2norm(F.leaky_relu(attn.view(n_img, n_reg, n_cap, n_word), 0.1), dim=3)
    attn = torch.softmax(attn.permute(0, 2, 3, 1) * SMOOTH, dim=3)                           # (Ni, Nb, n, 36)
    return attn.reshape(n_img, n_cap * n_word, n_reg)


def saf_per_caption(saf, sim_emb):
    """SAF (AttentionFiltration.forward) on (Ni, Nb, n+1, S), BatchNorm over each caption's own
    Ni x (n+1) logits in train mode. Returns (Ni, Nb, S) and the batch statistics (mean, biased
    var, count), or None in eval mode."""
    bn = saf.bn
    logits = saf.attn_sim_w(sim_emb).squeeze(-1)                                              # (Ni, Nb, n+1)
    if bn.training:
        mean = logits.mean(dim=(0, 2))
        var = (logits - mean[:, None]).pow(2).mean(dim=(0, 2))
        count = torch.full_like(mean, logits.size(0) * logits.size(2))
        stats = (mean.detach(), var.detach(), count)
        mean, var = mean[:, None], var[:, None]
    else:
        mean, var, stats = bn.running_mean, bn.running_var, None
    gates = torch.sigmoid((logits - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias)
    sim_attn = l1norm(gates, dim=-1)
    return l2norm(torch.matmul(sim_attn.unsqueeze(-2), sim_emb).squeeze(-2), dim=-1), stats


@torch.no_grad()
def update_running_stats(saf, mean, var, count):
    """BatchNorm running stats after one BN call per caption, in caption order (as upstream's loop).
    DDP (saf.gather_stats): the ranks' caption blocks in rank order, i.e. the global caption order."""
    bn = saf.bn
    if not bn.track_running_stats:
        return
    m = bn.momentum
    unbiased = var * count / (count - 1).clamp(min=1)
    if saf.gather_stats:
        gathered = all_gather_cat(torch.stack([mean, unbiased], 1))
        mean, unbiased = gathered[:, 0], gathered[:, 1]
    for j in range(mean.numel()):
        bn.running_mean.mul_(1 - m).add_(m * mean[j])
        bn.running_var.mul_(1 - m).add_(m * unbiased[j])
    bn.num_batches_tracked.add_(mean.numel())


def local_alignment(attn, regions, words, linear):
    """`LocalAlignment` of an nn.Linear, in float32 with autocast off: under --amp its inputs come
    in half precision, and its hand-written backward needs one dtype (autograd casts the
    gradients back)."""
    with torch.autocast(regions.device.type, enabled=False):
        return LocalAlignment.apply(attn.float(), regions.float(), words.float(), linear.weight.float(),
                                    linear.bias.float())


def _image_chunks(n_img, n_words):
    step = max(1, CHUNK_ROWS // max(1, n_words))
    return [(i, min(i + step, n_img)) for i in range(0, n_img, step)]


def _context(attn, regions, words):
    """c = attn @ V, |c| + eps, and l2norm(c) - q for a chunk (k, words, 36) x (k, 36, E)."""
    context = torch.bmm(attn, regions)
    norm = torch.linalg.vector_norm(context, dim=-1, keepdim=True)
    denom = norm + EPS
    return context, norm, denom, (context / denom).sub_(words)


class LocalAlignment(torch.autograd.Function):
    """y = l2norm(W((l2norm(attn @ V) - q)^2) + b) for every image x word: attn (Ni, Nw, 36),
    regions V (Ni, 36, E), words q (Nw, E), weight (S, E), bias (S) -> (Ni, Nw, S). Stores its
    inputs, y and the norms of the projections; backward recomputes the context per chunk of images."""

    @staticmethod
    def forward(ctx, attn, regions, words, weight, bias):
        gemm = gemms.select('onednn', attn.device, attn.dtype)
        packed = gemm.pack(weight)
        out = attn.new_empty(attn.size(0), attn.size(1), weight.size(0))
        norms = attn.new_empty(attn.size(0), attn.size(1), 1)
        for i, j in _image_chunks(attn.size(0), attn.size(1)):
            diff = _context(attn[i:j], regions[i:j], words)[3]
            proj = gemm.linear(diff.square_().view(-1, diff.size(-1)), packed, bias).view(j - i, -1, weight.size(0))
            norms[i:j] = torch.pow(proj, 2).sum(dim=-1, keepdim=True).sqrt()   # model.l2norm's op order
            torch.div(proj, norms[i:j] + EPS, out=out[i:j])
        ctx.save_for_backward(attn, regions, words, weight, out, norms)
        return out

    @staticmethod
    def backward(ctx, grad):
        attn, regions, words, weight, out, norms = ctx.saved_tensors
        grad = grad.contiguous()
        g_bias = torch.zeros_like(weight[:, 0])
        g_attn, g_regions = torch.empty_like(attn), torch.empty_like(regions)
        g_words, g_weight = torch.zeros_like(words), torch.zeros_like(weight)
        gemm = gemms.select('onednn', attn.device, attn.dtype)
        packed_t = gemm.pack(weight.t())                               # g @ W as a linear map
        for i, j in _image_chunks(attn.size(0), attn.size(1)):
            context, norm, denom, diff = _context(attn[i:j], regions[i:j], words)
            # through the outer l2norm, y = p / (|p| + eps): dp = g/(|p|+eps) - y (g.y) / |p|
            y, norm_p = out[i:j], norms[i:j]
            g = grad[i:j] / (norm_p + EPS) - y * ((grad[i:j] * y).sum(-1, keepdim=True) / norm_p)
            g_bias += g.sum((0, 1))
            g_weight.addmm_(g.reshape(-1, g.size(-1)).t(), diff.square().reshape(-1, diff.size(-1)))
            g_unit = gemm.linear(g.view(-1, g.size(-1)), packed_t).view(diff.shape).mul_(diff).mul_(2)  # d/d l2norm(c)
            g_words.sub_(g_unit.sum(0))
            # through l2norm (upstream: c / (|c| + eps)): g/(|c|+eps) - c (g.c) / ((|c|+eps)^2 |c|)
            dot = (g_unit * context).sum(-1, keepdim=True)
            g_context = g_unit.div_(denom).sub_(context.mul_(dot / (denom.square() * norm)))
            g_attn[i:j] = torch.bmm(g_context, regions[i:j].transpose(1, 2))
            g_regions[i:j] = torch.bmm(attn[i:j].transpose(1, 2), g_context)
        return g_attn, g_regions, g_words, g_weight, g_bias
