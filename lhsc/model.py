"""LHSC and SGRAF models: encoders, similarity head (vectorised + per-caption reference), loss, wrapper.

LHSC (upstream model.py) = SGRAF's SAF similarity network with two extra encoder stages:
4x IM_GCN on the regions and 4x TextAttn on the word embeddings. `--model SGRAF` builds plain
SGRAF (Paranioar/SGRAF model.py) with `--module_name SGR|SAF`. State-dict keys match upstream:
LHSC's head is `cal_sim_base_atten.*`, SGRAF's `SAF_module.*` / `SGR_module.<k>.*`.
"""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lhsc.gemm import TorchGemm
from lhsc.libs.img_gcn import IM_GCN
from lhsc.libs.text_atten import TextAttn

N_REGIONS = 36  # VisualSA's BatchNorm1d(36) normalises per region index: exactly 36 regions


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def l1norm(X, dim, eps=1e-8):
    """L1-normalize X along dim (eps added to the norm, as upstream)."""
    if X.dtype in _LOW_PRECISION:  # --amp: eps=1e-8 vanishes in fp16 and 0/0 would give NaN
        return l1norm(X.float(), dim, eps).to(X.dtype)
    return X / (torch.abs(X).sum(dim=dim, keepdim=True) + eps)


def l2norm(X, dim=-1, eps=1e-8):
    """L2-normalize X along dim (eps added to the norm, as upstream)."""
    if X.dtype in _LOW_PRECISION:  # --amp: padded words are zero vectors; keep 0/(0+eps) = 0
        return l2norm(X.float(), dim, eps).to(X.dtype)
    return X / (torch.pow(X, 2).sum(dim=dim, keepdim=True).sqrt() + eps)


def xavier_init_(module):
    """Upstream's init for Linear (Xavier uniform, bias 0) and BatchNorm1d (1, 0) children."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            r = np.sqrt(6.) / np.sqrt(m.in_features + m.out_features)
            m.weight.data.uniform_(-r, r)
            m.bias.data.fill_(0)
        elif isinstance(m, nn.BatchNorm1d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()


# ----------------------------------------------------------------------------- encoders

class EncoderImage(nn.Module):
    """Regions (B, 36, img_dim) -> (B, 36, E): fc, then `gcn_layers` IM_GCN blocks (LHSC: 4, SGRAF: 0)."""

    def __init__(self, img_dim, embed_size, no_imgnorm=False, gcn_layers=4):
        super(EncoderImage, self).__init__()
        self.embed_size = embed_size
        self.no_imgnorm = no_imgnorm
        self.fc = nn.Linear(img_dim, embed_size)
        self.gcn_layers = gcn_layers
        for b in range(1, gcn_layers + 1):
            setattr(self, 'IM_GCN_%d' % b, IM_GCN(in_channels=embed_size, inter_channels=embed_size))
        self.init_weights()

    def init_weights(self):
        r = np.sqrt(6.) / np.sqrt(self.fc.in_features + self.fc.out_features)
        self.fc.weight.data.uniform_(-r, r)
        self.fc.bias.data.fill_(0)

    def forward(self, images):
        img_emb = self.fc(images)
        if self.gcn_layers:
            v = img_emb.permute(0, 2, 1)
            for b in range(1, self.gcn_layers + 1):
                v = getattr(self, 'IM_GCN_%d' % b)(v)
            img_emb = v.permute(0, 2, 1)
        if not self.no_imgnorm:
            img_emb = l2norm(img_emb, dim=-1)
        return img_emb

    def load_state_dict(self, state_dict, strict=True):
        """Upstream (model.py:73-81) silently drops keys this encoder does not have."""
        own = self.state_dict()
        kept = OrderedDict((k, v) for k, v in state_dict.items() if k in own)
        return super(EncoderImage, self).load_state_dict(kept, strict=strict)


class EncoderText(nn.Module):
    """Word ids (B, L) -> (B, L, E): embed, dropout 0.4, `attn_layers` TextAttn (LHSC: 4), bi-GRU average."""

    def __init__(self, vocab_size, word_dim, embed_size, num_layers, drop_out=0.0,
                 use_bi_gru=False, no_txtnorm=False, attn_layers=4):
        super(EncoderText, self).__init__()
        self.embed_size = embed_size
        self.no_txtnorm = no_txtnorm
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.attn_layers = attn_layers
        for a in range(1, attn_layers + 1):
            setattr(self, 'W_att%d' % a, TextAttn(word_dim, drop_out))
        self.dropout = nn.Dropout(0.4)
        self.use_bi_gru = use_bi_gru
        self.cap_rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True,
                              bidirectional=use_bi_gru)
        self.init_weights()

    def init_weights(self):
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def forward(self, captions, lengths):
        cap_emb = self.dropout(self.embed(captions))
        for a in range(1, self.attn_layers + 1):
            cap_emb = getattr(self, 'W_att%d' % a)(cap_emb, cap_emb)
        lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
        packed = pack_padded_sequence(cap_emb, lengths, batch_first=True)
        out, _ = self.cap_rnn(packed)
        cap_emb, _ = pad_packed_sequence(out, batch_first=True)
        if self.use_bi_gru:
            half = cap_emb.size(2) // 2  # upstream model.py:129 uses py2 `/ 2`
            cap_emb = (cap_emb[:, :, :half] + cap_emb[:, :, half:]) / 2
        if not self.no_txtnorm:
            cap_emb = l2norm(cap_emb, dim=-1)
        return cap_emb


# ----------------------------------------------------------------------------- similarity parts

class VisualSA(nn.Module):
    """Global image by self-attention over regions; BatchNorm1d(num_region) normalises per region index."""

    def __init__(self, embed_dim, dropout_rate, num_region):
        super(VisualSA, self).__init__()
        self.embedding_local = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.BatchNorm1d(num_region),
                                             nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_global = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.BatchNorm1d(embed_dim),
                                              nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_common = nn.Sequential(nn.Linear(embed_dim, 1))
        xavier_init_(self)

    def forward(self, local, raw_global, gemm=None):
        weights = _self_attention_logits(self, local, raw_global, gemm)
        weights = torch.softmax(weights, dim=1)
        return l2norm((weights.unsqueeze(2) * local).sum(dim=1), dim=-1)


class TextSA(nn.Module):
    """Global caption by self-attention over words. `mask` (B, L) restricts it to the valid words."""

    def __init__(self, embed_dim, dropout_rate):
        super(TextSA, self).__init__()
        self.embedding_local = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_global = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_common = nn.Sequential(nn.Linear(embed_dim, 1))
        xavier_init_(self)

    def forward(self, local, raw_global, mask=None, gemm=None):
        weights = _self_attention_logits(self, local, raw_global, gemm)
        if mask is not None:
            weights = weights.masked_fill(~mask, float('-inf'))
        weights = torch.softmax(weights, dim=1)
        return l2norm((weights.unsqueeze(2) * local).sum(dim=1), dim=-1)


def _self_attention_logits(module, local, raw_global, gemm=None):
    """Logits (B, n) of VisualSA / TextSA: embedding_common(emb_l(x) * emb_g(g)). In inference
    with `gemm` products: w_c . (emb_l(x) * emb_g(g)) + b_c as one product per item, without the
    (B, n, E) elementwise product; emb_* = Linear [+ BatchNorm in eval: per-channel affine] + Tanh
    (Dropout is the identity)."""
    if gemm is None or module.training or torch.is_grad_enabled():
        l_emb = module.embedding_local(local)
        g_emb = module.embedding_global(raw_global)
        return module.embedding_common(l_emb * g_emb.unsqueeze(1)).squeeze(2)
    linear = _linear_with(gemm)

    def embed(seq, x):
        y = linear(seq[0], x)
        if isinstance(seq[1], nn.BatchNorm1d):
            y = seq[1](y)
        return torch.tanh_(y)
    common = module.embedding_common[0]
    l_emb, g_emb = embed(module.embedding_local, local), embed(module.embedding_global, raw_global)
    return torch.bmm(l_emb, (g_emb * common.weight).unsqueeze(2)).squeeze(2) + common.bias


class GraphReasoning(nn.Module):
    """SGRAF's SGR step over the alignment graph (nodes = global + words). `key_mask` hides padding."""

    def __init__(self, sim_dim):
        super(GraphReasoning, self).__init__()
        self.graph_query_w = nn.Linear(sim_dim, sim_dim)
        self.graph_key_w = nn.Linear(sim_dim, sim_dim)
        self.sim_graph_w = nn.Linear(sim_dim, sim_dim)
        self.relu = nn.ReLU()
        xavier_init_(self)

    def forward(self, sim_emb, key_mask=None, gemm=None):
        linear = _linear_with(gemm)
        sim_query = linear(self.graph_query_w, sim_emb)
        sim_key = linear(self.graph_key_w, sim_emb)
        edge = torch.matmul(sim_query, sim_key.transpose(-1, -2))
        if key_mask is not None:
            edge = edge.masked_fill(~key_mask.unsqueeze(-2), float('-inf'))
        edge = torch.softmax(edge, dim=-1)
        return self.relu(linear(self.sim_graph_w, torch.matmul(edge, sim_emb)))


def _linear_with(gemm):
    """linear(module, x): module(x), or in inference the same product through `gemm` (lhsc.gemm)."""
    if gemm is None or torch.is_grad_enabled():
        return lambda module, x: module(x)

    def linear(module, x):
        y = gemm.linear(x.reshape(-1, x.size(-1)), gemm.pack(module.weight), module.bias)
        return y.view(*x.shape[:-1], -1)
    return linear


class AttentionFiltration(nn.Module):
    """SAF: gate each alignment node by sigmoid(BN(w.x)), L1-normalised, and aggregate.

    Called SimilarityCalculation in LHSC (prefix `cal_sim_base_atten.`), AttentionFiltration in
    SGRAF (prefix `SAF_module.`); the computation is identical.
    """

    def __init__(self, sim_dim):
        super(AttentionFiltration, self).__init__()
        self.attn_sim_w = nn.Linear(sim_dim, 1)
        self.bn = nn.BatchNorm1d(1)
        self.gather_stats = False  # DDP: ranks hold caption blocks; update with every rank's stats
        xavier_init_(self)

    def forward(self, sim_emb):
        """Upstream form: sim_emb (Ni, n+1, S) of ONE caption (train-mode BN stats over this caption)."""
        sim_attn = l1norm(torch.sigmoid(self.bn(self.attn_sim_w(sim_emb).permute(0, 2, 1))), dim=-1)
        return l2norm(torch.matmul(sim_attn, sim_emb).squeeze(1), dim=-1)

    def gates(self, logits_glo, logits_loc, word_mask):
        """Vectorised BN + sigmoid for many captions at once.

        logits_glo (Ni, Nc), logits_loc (Ni, Nc, L), word_mask (Nc, L). In training mode the
        statistics are those of each caption separately (upstream calls the BN once per caption,
        over Ni x (n+1) values), and the running stats are updated caption by caption in order.
        """
        bn = self.bn
        if bn.training:
            mask = word_mask.unsqueeze(0).to(logits_loc.dtype)
            count = logits_glo.size(0) * (word_mask.sum(1).to(logits_loc.dtype) + 1)       # (Nc,)
            mean = (logits_glo.sum(0) + (logits_loc * mask).sum((0, 2))) / count
            var = ((logits_glo - mean).pow(2).sum(0)
                   + ((logits_loc - mean[None, :, None]).pow(2) * mask).sum((0, 2))) / count
            self._update_running_stats(mean.detach(), var.detach(), count)
        else:
            mean, var = bn.running_mean, bn.running_var
        inv = bn.weight / torch.sqrt(var + bn.eps)

        def norm(x, m, k):
            return torch.sigmoid((x - m) * k + bn.bias)

        if bn.training:
            return norm(logits_glo, mean, inv), norm(logits_loc, mean[None, :, None], inv[None, :, None])
        return norm(logits_glo, mean, inv), norm(logits_loc, mean, inv)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, count):
        bn = self.bn
        if not bn.track_running_stats:
            return
        m = bn.momentum
        unbiased = var * count / (count - 1).clamp(min=1)
        if self.gather_stats:
            from common.runtime import all_gather_cat
            stats = all_gather_cat(torch.stack([mean, unbiased], 1))   # rank order = caption order
            mean, unbiased = stats[:, 0], stats[:, 1]
        for j in range(mean.numel()):
            bn.running_mean.mul_(1 - m).add_(m * mean[j])
            bn.running_var.mul_(1 - m).add_(m * unbiased[j])
        bn.num_batches_tracked.add_(mean.numel())


SimilarityCalculation = AttentionFiltration  # LHSC's name for the same module


def _masked_words(cap_emb, lens):
    """cap_emb cut to the longest caption, padded words set to exact zeros; and the word mask."""
    max_len = int(lens.max())
    word_mask = torch.arange(max_len, device=cap_emb.device)[None, :] < lens[:, None]       # (Nc, L)
    return cap_emb[:, :max_len, :] * word_mask.unsqueeze(-1).to(cap_emb.dtype), word_mask


def _unit_rows(x):
    """In-place l2norm over the last dim (upstream's l2norm: x / (|x| + 1e-8))."""
    return x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).add_(1e-8))


def SCAN_attention(query, context, smooth, eps=1e-8):
    """Word-to-region attention: query (B, n, d), context (B, 36, d) -> (B, n, d). Upstream's op
    sequence, its transposed copies and the transposed (non-contiguous) result included: this is
    the reference loop's attention, and what it costs is the benchmark's baseline."""
    attn = torch.bmm(context, query.transpose(1, 2))                          # (B, 36, n)
    attn = l2norm(F.leaky_relu(attn, 0.1), 2)                                  # over the words
    attn = torch.softmax(attn.transpose(1, 2).contiguous() * smooth, dim=2)    # (B, n, 36)
    attn_t = attn.transpose(1, 2).contiguous()                                 # (B, 36, n)
    weighted = torch.bmm(context.transpose(1, 2), attn_t)                      # (B, d, n)
    return l2norm(weighted.transpose(1, 2), dim=-1)


class EncoderSimilarity(nn.Module):
    """Image-caption similarity (Ni, Nc) from region (Ni, 36, E) and word (Nc, L, E) embeddings.

    head: 'LHSC' (SAF head named cal_sim_base_atten), 'SAF' (SAF_module) or 'SGR' (SGR_module).
    `forward` is the vectorised pass over all pairs with length masks; `forward_loop` is the
    upstream per-caption loop, kept as the reference implementation.
    """

    def __init__(self, embed_size, sim_dim, head='LHSC', sgr_step=3):
        super(EncoderSimilarity, self).__init__()
        self.head = head
        self.v_global_w = VisualSA(embed_size, 0.4, N_REGIONS)
        self.t_global_w = TextSA(embed_size, 0.4)
        self.sim_tranloc_w = nn.Linear(embed_size, sim_dim)
        self.sim_tranglo_w = nn.Linear(embed_size, sim_dim)
        self.sim_eval_w = nn.Linear(sim_dim, 1)
        self.sigmoid = nn.Sigmoid()
        if head == 'LHSC':
            self.cal_sim_base_atten = AttentionFiltration(sim_dim)
        elif head == 'SAF':
            self.SAF_module = AttentionFiltration(sim_dim)
        elif head == 'SGR':
            self.SGR_module = nn.ModuleList([GraphReasoning(sim_dim) for _ in range(sgr_step)])
        else:
            raise ValueError('Invalid similarity head %r (expected LHSC, SAF or SGR)' % head)
        for m in (self.sim_tranloc_w, self.sim_tranglo_w, self.sim_eval_w):
            xavier_init_(m)

    @property
    def saf(self):
        return self.cal_sim_base_atten if self.head == 'LHSC' else getattr(self, 'SAF_module', None)

    # ---- reference: upstream's loop over captions (model.py:279-318) ----
    def forward_loop(self, img_emb, cap_emb, cap_lens):
        n_image = img_emb.size(0)
        img_glo = self.v_global_w(img_emb, torch.mean(img_emb, 1))
        sim_all = []
        for i in range(cap_emb.size(0)):
            n_word = int(cap_lens[i])
            cap_i = cap_emb[i, :n_word, :].unsqueeze(0)
            cap_i_expand = cap_i.repeat(n_image, 1, 1)
            cap_glo_i = self.t_global_w(cap_i, torch.mean(cap_i, 1))
            context_img = SCAN_attention(cap_i_expand, img_emb, smooth=9.0)
            sim_loc = l2norm(self.sim_tranloc_w(torch.pow(context_img - cap_i_expand, 2)), dim=-1)
            sim_glo = l2norm(self.sim_tranglo_w(torch.pow(img_glo - cap_glo_i, 2)), dim=-1)
            sim_emb = torch.cat([sim_glo.unsqueeze(1), sim_loc], 1)
            if self.head == 'SGR':
                for module in self.SGR_module:
                    sim_emb = module(sim_emb)
                sim_vec = sim_emb[:, 0, :]
            else:
                sim_vec = self.saf(sim_emb)
            sim_all.append(self.sigmoid(self.sim_eval_w(sim_vec)))
        return torch.cat(sim_all, 1)

    # ---- vectorised pass over (images x captions x words) ----
    def image_globals(self, img_emb, gemm=None):
        """VisualSA global image vectors (Ni, E); per image in eval mode, so computable once."""
        return self.v_global_w(img_emb, torch.mean(img_emb, 1), gemm=gemm)

    def caption_globals(self, cap_emb, cap_lens, gemm=None):
        """TextSA global caption vectors (Nc, E) over each caption's own words."""
        lens = torch.as_tensor(cap_lens, dtype=torch.int64, device=cap_emb.device)
        cap, word_mask = _masked_words(cap_emb, lens)
        cap_ave = cap.sum(1) / lens.unsqueeze(1).to(cap.dtype)
        return self.t_global_w(cap, cap_ave, mask=word_mask, gemm=gemm)

    def image_side(self, img_emb, gemm=None, img_glo=None):
        """What the inference pass needs of a tile of images, computed once and reused for every
        caption chunk: global vectors, 36x36 Gram matrices and (oneDNN) packed region matrices."""
        gemm = gemm or TorchGemm
        side = {'emb': img_emb, 'gemm': gemm,
                'glo': self.image_globals(img_emb, gemm) if img_glo is None else img_glo,
                'gram': torch.bmm(img_emb, img_emb.transpose(1, 2))}                       # (Ni, 36, 36)
        side['tranloc'], side['tranglo'] = gemm.pack(self.sim_tranloc_w.weight), gemm.pack(self.sim_tranglo_w.weight)
        if gemm.per_image:
            side['regions'] = gemm.pack(img_emb.reshape(-1, img_emb.size(-1)))               # (Ni*36, E)
            side['regions_t'] = [gemm.pack(regions.t()) for regions in img_emb]              # Ni x (E, 36)
        return side

    def forward(self, img_emb, cap_emb, cap_lens, img_glo=None, cap_glo=None, gemm=None, image_side=None):
        """(Ni, Nc) scores. img_glo / cap_glo: precomputed image_globals / caption_globals.
        Inference only: gemm, the lhsc.gemm products to use (default torch's), or image_side,
        the tile's precomputed `image_side` (which fixes the products)."""
        lens = torch.as_tensor(cap_lens, dtype=torch.int64, device=cap_emb.device)
        cap, word_mask = _masked_words(cap_emb, lens)                                       # exact zeros
        if torch.is_grad_enabled():  # upstream's order of the dropout draws: images, then captions
            if img_glo is None:
                img_glo = self.image_globals(img_emb)                                       # (Ni, E)
            if cap_glo is None:
                cap_glo = self.caption_globals(cap, lens)                                    # (Nc, E)
            sim_loc = self._local_alignments_train(img_emb, cap)
            sim_glo = self.sim_tranglo_w(torch.pow(img_glo.unsqueeze(1) - cap_glo.unsqueeze(0), 2))
            return self._head_scores(l2norm(sim_glo, dim=-1), sim_loc, word_mask)
        side = image_side if image_side is not None else self.image_side(img_emb, gemm, img_glo)
        if cap_glo is None:
            cap_glo = self.caption_globals(cap, lens, gemm=side['gemm'])
        sim_glo = torch.pow(side['glo'].unsqueeze(1) - cap_glo.unsqueeze(0), 2)             # (Ni, Nc, E)
        sim_glo = side['gemm'].linear(sim_glo.view(-1, sim_glo.size(-1)), side['tranglo'], self.sim_tranglo_w.bias)
        sim_glo = l2norm(sim_glo.view(img_emb.size(0), cap.size(0), -1), dim=-1)             # (Ni, Nc, S)
        return self._inference_scores(side, cap, word_mask, sim_glo)

    def _head_scores(self, sim_glo, sim_loc, word_mask, gemm=None):
        """Scores (Ni, Nc) from the global (Ni, Nc, S) and local (Ni, Nc, L, S) alignments."""
        if self.head == 'SGR':
            sim_vec = self._sgr(sim_glo, sim_loc, word_mask, gemm)
        else:
            sim_vec = self._saf(sim_glo, sim_loc, word_mask)
        return self.sigmoid(self.sim_eval_w(sim_vec)).squeeze(-1)

    @staticmethod
    def _word_region_attention(img_emb, cap, gemm=TorchGemm, packed_regions=None):
        """SCAN attention weights (Ni, Nc*L, 36) of every (image, caption word) over the regions.
        Padded words are exact zeros, so the l2norm over a caption's words ignores them.
        packed_regions: gemm.pack(img_emb as (Ni*36, E)) when gemm.per_image."""
        n_img, n_reg, dim = img_emb.shape
        n_cap, max_len = cap.shape[:2]
        if gemm.per_image:  # words x (images*regions) in one product, then into (Ni, words, 36)
            attn = gemm.linear(cap.reshape(n_cap * max_len, dim), packed_regions)
            attn = l2norm(F.leaky_relu(attn.view(n_cap, max_len, n_img, n_reg), 0.1), dim=1)
            attn = torch.softmax(attn * 9.0, dim=3)
            return attn.permute(2, 0, 1, 3).reshape(n_img, n_cap * max_len, n_reg)
        attn = torch.matmul(img_emb.reshape(n_img * n_reg, dim), cap.reshape(n_cap * max_len, dim).t())
        attn = l2norm(F.leaky_relu(attn.view(n_img, n_reg, n_cap, max_len), 0.1), dim=3)
        attn = torch.softmax(attn.permute(0, 2, 3, 1) * 9.0, dim=3)                         # (Ni, Nc, L, 36)
        return attn.reshape(n_img, n_cap * max_len, n_reg)

    def _local_alignments_train(self, img_emb, cap):
        """l2norm(W((l2norm(attn @ V) - q)^2)) (Ni, Nc, L, S) in upstream's order, for autograd."""
        attn = self._word_region_attention(img_emb, cap)
        context = l2norm(torch.bmm(attn, img_emb), dim=-1).view(img_emb.size(0), cap.size(0), cap.size(1), -1)
        del attn
        sim_loc = torch.pow(context - cap.unsqueeze(0), 2)
        del context
        return l2norm(self.sim_tranloc_w(sim_loc), dim=-1)

    def _inference_scores(self, side, cap, word_mask, sim_glo):
        """Scores (Ni, Nc) in eval mode; the local alignments l2norm(W((l2norm(attn @ V) - q)^2))
        are computed with fewer passes over the largest tensors.

        |attn @ V|^2 = rowsum((attn @ G) * attn) with the 36x36 Gram matrix G = V V^T, so the
        context norm comes from the small attention weights; scaling the weights by 1/(|c|+eps)
        and one product + subtraction then give l2norm(context) - q. With oneDNN products that
        runs image by image, so the (words x E) difference stays in cache.
        """
        img_emb, gemm = side['emb'], side['gemm']
        attn = self._word_region_attention(img_emb, cap, gemm, side.get('regions'))
        n_img, n_words, _ = attn.shape
        n_cap, max_len = cap.shape[:2]
        sq_norm = (torch.bmm(attn, side['gram']) * attn).sum(-1, keepdim=True).clamp_(min=0)
        attn = attn.div_(sq_norm.sqrt_().add_(1e-8))
        words = cap.reshape(n_words, -1)
        if not gemm.per_image:
            diff = torch.bmm(attn, img_emb).sub_(words.unsqueeze(0))                         # c/|c| - q
            del attn
            sim_loc = _unit_rows(self.sim_tranloc_w(diff.square_()))
            del diff
        else:
            weight, bias = side['tranloc'], self.sim_tranloc_w.bias
            sim_loc = attn.new_empty(n_img, n_words, bias.numel())
            for i in range(n_img):  # (c/|c| - q)^2 (in one pass), projected, normalised while in cache
                diff = F.mse_loss(gemm.linear(attn[i], side['regions_t'][i]), words, reduction='none')
                proj = gemm.linear(diff, weight, bias)
                del diff
                sim_loc[i] = _unit_rows(proj)
            del attn
        return self._head_scores(sim_glo, sim_loc.view(n_img, n_cap, max_len, -1), word_mask, gemm)

    def _saf(self, sim_glo, sim_loc, word_mask):
        saf = self.saf
        logit_glo = saf.attn_sim_w(sim_glo).squeeze(-1)                                      # (Ni, Nc)
        logit_loc = saf.attn_sim_w(sim_loc).squeeze(-1)                                      # (Ni, Nc, L)
        gate_glo, gate_loc = saf.gates(logit_glo, logit_loc, word_mask)
        gate_loc = gate_loc * word_mask.unsqueeze(0).to(gate_loc.dtype)
        norm = gate_glo + gate_loc.sum(-1) + 1e-8                                            # l1norm (gates > 0)
        pooled = gate_glo.unsqueeze(-1) * sim_glo + torch.matmul(gate_loc.unsqueeze(-2), sim_loc).squeeze(-2)
        return l2norm(pooled / norm.unsqueeze(-1), dim=-1)

    def _sgr(self, sim_glo, sim_loc, word_mask, gemm=None):
        nodes = torch.cat([sim_glo.unsqueeze(2), sim_loc], 2)                                # (Ni, Nc, L+1, S)
        node_mask = torch.cat([torch.ones_like(word_mask[:, :1]), word_mask], 1)             # (Nc, L+1)
        for module in self.SGR_module:
            nodes = module(nodes, key_mask=node_mask.unsqueeze(0), gemm=gemm)
        return nodes[:, :, 0, :]


# ----------------------------------------------------------------------------- loss

class ContrastiveLoss(nn.Module):
    """Hinge triplet loss on the (B, B) score matrix, summed; hardest negative if max_violation."""

    def __init__(self, margin=0, max_violation=False):
        super(ContrastiveLoss, self).__init__()
        self.margin = margin
        self.max_violation = max_violation

    def forward(self, scores):
        diagonal = scores.diag().view(scores.size(0), 1)
        cost_s = (self.margin + scores - diagonal.expand_as(scores)).clamp(min=0)
        cost_im = (self.margin + scores - diagonal.t().expand_as(scores)).clamp(min=0)
        # upstream model.py:386-390 only defines the mask under CUDA (NameError on CPU): fixed here
        eye = torch.eye(scores.size(0), device=scores.device, dtype=torch.bool)
        cost_s = cost_s.masked_fill(eye, 0)
        cost_im = cost_im.masked_fill(eye, 0)
        if self.max_violation:
            cost_s = cost_s.max(1)[0]
            cost_im = cost_im.max(0)[0]
        return cost_s.sum() + cost_im.sum()


# ----------------------------------------------------------------------------- wrapper

def architecture(opt):
    """'LHSC' or 'SGRAF' for an opt Namespace (SGRAF checkpoints have module_name and no `model`)."""
    name = getattr(opt, 'model', None)
    if name is None:
        name = 'SGRAF' if hasattr(opt, 'module_name') else 'LHSC'
    if name not in ('LHSC', 'SGRAF'):
        raise ValueError('--model must be LHSC or SGRAF, got %r' % name)
    return name


def build_encoders(opt):
    """(img_enc, txt_enc, sim_enc) for `opt` (upstream LHSC/SGRAF constructor arguments)."""
    lhsc = architecture(opt) == 'LHSC'
    img_enc = EncoderImage(opt.img_dim, opt.embed_size, no_imgnorm=opt.no_imgnorm,
                           gcn_layers=4 if lhsc else 0)
    txt_enc = EncoderText(opt.vocab_size, opt.word_dim, opt.embed_size, opt.num_layers,
                          getattr(opt, 'drop_out', 0.0), use_bi_gru=opt.bi_gru,
                          no_txtnorm=opt.no_txtnorm, attn_layers=4 if lhsc else 0)
    head = 'LHSC' if lhsc else opt.module_name
    sim_enc = EncoderSimilarity(opt.embed_size, opt.sim_dim, head=head,
                                sgr_step=getattr(opt, 'sgr_step', 3))
    return img_enc, txt_enc, sim_enc


class _GatherColumns(torch.autograd.Function):
    """All-gather column blocks of the score matrix; backward keeps this rank's block only.

    Every rank computes the same loss on the full matrix; summing (not averaging) the parameter
    gradients over ranks then gives exactly the single-process gradient (see train_emb).
    """

    @staticmethod
    def forward(ctx, block, widths):
        import torch.distributed as dist
        rank = dist.get_rank()
        widest = max(widths)
        padded = block.new_zeros(block.size(0), widest)
        padded[:, :block.size(1)] = block
        gathered = [torch.zeros_like(padded) for _ in widths]
        dist.all_gather(gathered, padded.contiguous())
        ctx.start = sum(widths[:rank])
        ctx.width = widths[rank]
        return torch.cat([g[:, :w] for g, w in zip(gathered, widths)], 1)

    @staticmethod
    def backward(ctx, grad):
        return grad[:, ctx.start:ctx.start + ctx.width], None


class LHSC(object):
    """Upstream's wrapper (model.py `LHSC` / SGRAF's `SGRAF`): three encoders, loss, Adam, Eiters.

    state_dict() is upstream's list [img_enc, txt_enc, sim_enc]. `device`, `amp` and
    `dist_info` (common.runtime.DistInfo) are port additions; defaults give upstream behaviour.
    """
    loss_name = 'a/Loss'  # SGRAF logs 'Loss'

    def __init__(self, opt, device=None, amp=False, dist_info=None):
        from common.runtime import make_grad_scaler
        from common.logger import LogCollector
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.grad_clip = opt.grad_clip
        self.img_enc, self.txt_enc, self.sim_enc = build_encoders(opt)
        for enc in (self.img_enc, self.txt_enc, self.sim_enc):
            enc.to(self.device)
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
        self.criterion = ContrastiveLoss(margin=opt.margin, max_violation=opt.max_violation)
        self.params = list(self.txt_enc.parameters()) + list(self.img_enc.parameters()) \
            + list(self.sim_enc.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=opt.learning_rate)
        self.amp = bool(amp) and self.device.type == 'cuda'
        self.scaler = make_grad_scaler(self.device, self.amp)
        self.dist_info = dist_info
        if self.distributed and self.sim_enc.saf is not None:
            self.sim_enc.saf.gather_stats = True
        self.Eiters = 0
        self.step_seed = 0  # distributed only: the per-step seed base shared by all ranks
        self.logger = LogCollector()

    @property
    def distributed(self):
        return self.dist_info is not None and self.dist_info.distributed and self.dist_info.world_size > 1

    def state_dict(self):
        return [self.img_enc.state_dict(), self.txt_enc.state_dict(), self.sim_enc.state_dict()]

    def load_state_dict(self, state_dict):
        self.img_enc.load_state_dict(state_dict[0])
        self.txt_enc.load_state_dict(state_dict[1])
        self.sim_enc.load_state_dict(state_dict[2])

    def train_start(self):
        for enc in (self.img_enc, self.txt_enc, self.sim_enc):
            enc.train()

    def val_start(self):
        for enc in (self.img_enc, self.txt_enc, self.sim_enc):
            enc.eval()

    def forward_emb(self, images, captions, lengths):
        images = images.to(self.device, non_blocking=True)
        captions = captions.to(self.device, non_blocking=True)
        return self.img_enc(images), self.txt_enc(captions, lengths), lengths

    def forward_sim(self, img_embs, cap_embs, cap_lens):
        return self.sim_enc(img_embs, cap_embs, cap_lens)

    def forward_loss(self, sims, **kwargs):
        loss = self.criterion(sims)
        self.logger.update(self.loss_name, loss.item(), sims.size(0))
        return loss

    def batch_scores(self, images, captions, lengths):
        """(B, B) training scores. Distributed: every rank encodes the gathered global batch
        (cheap, identical), computes the score columns of its share of captions (the costly
        part), and the blocks are all-gathered into the full matrix."""
        from common.runtime import autocast
        if self.distributed:
            images, captions, lengths = gather_batch(images, captions, lengths, self.device)
            # identical dropout masks in the (replicated) encoders on every rank
            torch.manual_seed(self.step_seed + self.Eiters)
        with autocast(self.device, self.amp):
            img_embs, cap_embs, cap_lens = self.forward_emb(images, captions, lengths)
            if not self.distributed:
                return self.forward_sim(img_embs, cap_embs, cap_lens).float()
            widths = [len(c) for c in np.array_split(np.arange(len(cap_lens)), self.dist_info.world_size)]
            start = sum(widths[:self.dist_info.rank])
            stop = start + widths[self.dist_info.rank]
            block = self.forward_sim(img_embs, cap_embs[start:stop], cap_lens[start:stop]).float()
        return _GatherColumns.apply(block, widths)

    def train_emb(self, images, captions, lengths, ids=None, *args):
        """One training step (upstream order: scores, zero_grad, loss, backward, clip, step)."""
        self.Eiters += 1
        self.logger.update('Eit', self.Eiters, 0)
        self.logger.update('lr', self.optimizer.param_groups[0]['lr'], 0)
        sims = self.batch_scores(images, captions, lengths)
        self.optimizer.zero_grad()
        loss = self.forward_loss(sims)
        self.scaler.scale(loss).backward()
        if self.distributed:
            sum_gradients(self.params)
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


class SGRAF(LHSC):
    """Plain SGRAF (Paranioar/SGRAF `SGRAF`): same wrapper, its loss is logged as 'Loss'."""
    loss_name = 'Loss'


def build_model(opt, **kwargs):
    return (LHSC if architecture(opt) == 'LHSC' else SGRAF)(opt, **kwargs)


def gather_batch(images, captions, lengths, device):
    """All-gather a collated batch from every rank and re-sort it by caption length (stable, as
    collate_fn does), so each rank holds the same global batch as a single process would."""
    import torch.distributed as dist
    from common.runtime import all_gather_cat
    images = images.to(device)
    lens = torch.as_tensor(lengths, dtype=torch.int64, device=device)
    longest = lens.max().clone()
    dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    padded = captions.new_zeros(captions.size(0), int(longest)).to(device)
    padded[:, :captions.size(1)] = captions.to(device)
    images, padded, lens = all_gather_cat(images), all_gather_cat(padded), all_gather_cat(lens)
    order = torch.as_tensor(sorted(range(len(lens)), key=lambda k: -int(lens[k])), device=device)
    lens = lens[order]
    return images[order], padded[order][:, :int(lens[0])], [int(n) for n in lens]


def sum_gradients(params):
    """All-reduce (sum) the gradients of `params` across ranks, in one flat buffer."""
    import torch.distributed as dist
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
