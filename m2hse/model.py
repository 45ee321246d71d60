"""M2HSE networks (upstream model.py): image/text encoders, the global and local subnetworks and the
multi-spring balance (MSB) loss. Module and parameter names are upstream's (checkpoint keys)."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from m2hse.xattn import cross_region_scores, l2norm, local_scores


class EncoderImage(nn.Module):
    """Linear projection of a CNN or BoVW feature (global (B, D) or per region (B, 9, D)), then l2norm."""

    def __init__(self, img_dim, embed_size):
        super(EncoderImage, self).__init__()
        self.embed_size = embed_size
        self.fc = nn.Linear(img_dim, embed_size)
        self.init_weights()

    def init_weights(self):
        """Xavier-uniform weight, zero bias (upstream model.py:106-113)."""
        r = np.sqrt(6.) / np.sqrt(self.fc.in_features + self.fc.out_features)
        self.fc.weight.data.uniform_(-r, r)
        self.fc.bias.data.fill_(0)

    def forward(self, images):
        return l2norm(self.fc(images), dim=-1)


class EncoderText_local(nn.Module):
    """Word embedding + (Bi)GRU; returns l2-normalised word features (B, T, d), padded steps 0."""

    def __init__(self, vocab_size, word_dim, embed_size, num_layers, use_bi_gru=True):
        super(EncoderText_local, self).__init__()
        self.embed_size = embed_size
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.use_bi_gru = bool(use_bi_gru)  # upstream passes the (always truthy) CLI value through
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True,
                          bidirectional=self.use_bi_gru)
        self.init_weights()

    def init_weights(self):
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def word_features(self, x, lengths):
        """x (B, T) ids sorted by decreasing length; lengths (B,) -> (B, max(lengths), d)."""
        lengths = [int(n) for n in lengths]
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True)
        out, _ = self.rnn(packed)
        cap_emb, _ = pad_packed_sequence(out, batch_first=True)
        if self.use_bi_gru:
            half = cap_emb.size(2) // 2
            cap_emb = (cap_emb[:, :, :half] + cap_emb[:, :, half:]) / 2
        return l2norm(cap_emb, dim=-1)

    def forward(self, x, lengths):
        return self.word_features(x, lengths)


class EncoderText_global(EncoderText_local):
    """Same text encoder, pooled to one vector per caption.

    Upstream quirk (model.py:155), kept by default: the pooled vector is the mean over the *batch's*
    padded length T (padded steps are 0), not over the caption's own length, and is not
    re-normalised, so a caption's embedding depends on the batch it falls in.
    `mean_by_length=True` (--global_mean_by_length) divides by the caption's own length instead.
    """

    def __init__(self, vocab_size, word_dim, embed_size, num_layers, use_bi_gru=True, mean_by_length=False):
        super(EncoderText_global, self).__init__(vocab_size, word_dim, embed_size, num_layers, use_bi_gru)
        self.mean_by_length = mean_by_length

    def forward(self, x, lengths):
        cap_emb = self.word_features(x, lengths)
        if self.mean_by_length:
            n = torch.as_tensor([int(v) for v in lengths], dtype=cap_emb.dtype, device=cap_emb.device)
            return cap_emb.sum(dim=1) / n.unsqueeze(1)
        return torch.mean(cap_emb, dim=1)


def compute_sims(images, captions):
    """Dot-product scores (n_img, n_cap); upstream filled captions x images shards and transposed."""
    return torch.mm(captions, images.t()).t()


class _MMHSE(nn.Module):
    """Shared wiring: CNN encoder + its text encoder (primary), BoVW encoder + its own text encoder."""
    level = None
    text_encoder = None

    def __init__(self, opt):
        super(_MMHSE, self).__init__()
        self.opt = opt
        g = self.level
        text_args = (opt.vocab_size, opt.word_dim, opt.embed_size, opt.num_layers, opt.bi_gru)
        setattr(self, g + '_cnn_enc', EncoderImage(opt.cnn_dim, opt.embed_size))
        setattr(self, g + '_bovw_enc', EncoderImage(opt.bovw_dim, opt.embed_size))
        setattr(self, g + '_cnn_gru_enc', self.make_text_encoder(text_args))
        setattr(self, g + '_bovw_gru_enc', self.make_text_encoder(text_args))

    def make_text_encoder(self, text_args):
        return EncoderText_local(*text_args)

    def _device(self):
        return next(self.parameters()).device

    def forward_emb_cnn(self, cnns, captions, lengths):
        """Image (CNN) and caption embeddings of the primary branch (the only one used at test)."""
        dev = self._device()
        g = self.level
        return getattr(self, g + '_cnn_enc')(cnns.to(dev)), getattr(self, g + '_cnn_gru_enc')(captions.to(dev), lengths)

    def forward_emb_bovw(self, bovws, captions, lengths):
        dev = self._device()
        g = self.level
        return getattr(self, g + '_bovw_enc')(bovws.to(dev)), getattr(self, g + '_bovw_gru_enc')(captions.to(dev), lengths)


class MMHSE_global(_MMHSE):
    """Global-level subnetwork: whole-image features, pooled caption vectors, dot-product scores."""
    level = 'global'

    def make_text_encoder(self, text_args):
        return EncoderText_global(*text_args, mean_by_length=getattr(self.opt, 'global_mean_by_length', False))

    def forward(self, cnns, captions, lengths, bovws):
        """-> S_P (CNN-text), S_A1 (BoVW-text), S_A2 (CNN-BoVW), float32 (n, n), rows = images."""
        cnn_embs, cnn_txt = self.forward_emb_cnn(cnns, captions, lengths)
        bovw_embs, bovw_txt = self.forward_emb_bovw(bovws, captions, lengths)
        return compute_sims(cnn_embs, cnn_txt), compute_sims(bovw_embs, bovw_txt), compute_sims(cnn_embs, bovw_embs)


class MMHSE_local(_MMHSE):
    """Local-level subnetwork: 3x3 block features, word features, cross-attention scores."""
    level = 'local'

    def __init__(self, opt, attention='fast'):
        super(MMHSE_local, self).__init__(opt)
        self.attention = attention  # 'fast' | 'exact' | 'reference' (m2hse/xattn.py); same scores

    # Under --amp only the encoders run in half precision: the attention keeps upstream's
    # float32/float64 arithmetic (its masked softmaxes and norms are not half-safe).
    def forward_score(self, img_emb, cap_emb, cap_len):
        with torch.autocast(device_type=img_emb.device.type, enabled=False):
            return local_scores(img_emb.float(), cap_emb.float(), cap_len, self.opt.raw_feature_norm,
                                self.opt.lambda_softmax, impl=self.attention)

    def forward_score_cb(self, c, b):
        with torch.autocast(device_type=c.device.type, enabled=False):
            return cross_region_scores(c.float(), b.float(), self.opt.raw_feature_norm, self.opt.lambda_softmax,
                                       impl=self.attention)

    def forward(self, cnns, captions, lengths, bovws):
        """-> S_P, S_A1, S_A2 as float64 (n, n), rows = images (CNN images for S_A2)."""
        cnn_emb, cnn_cap_emb = self.forward_emb_cnn(cnns, captions, lengths)
        bovw_emb, bovw_cap_emb = self.forward_emb_bovw(bovws, captions, lengths)
        return (self.forward_score(cnn_emb, cnn_cap_emb, lengths),
                self.forward_score(bovw_emb, bovw_cap_emb, lengths),
                self.forward_score_cb(cnn_emb, bovw_emb))


def build_model(level, opt, **kwargs):
    return (MMHSE_global if level == 'global' else MMHSE_local)(opt, **kwargs)


class MultiSpringBalanceLoss(nn.Module):
    """MSB loss (upstream model.py:406-464), vectorised over the batch with the same arithmetic.

    For each i, on row S[i,:] ("cap") and column S[:,i] ("im"): positives P share i's label (the
    diagonal included), negatives N do not. Hard pairs: P' = {p < max(N) + Delta},
    N' = {n > min(P) - Delta}. Row i is skipped if any of its four mined sets is empty, but the sum
    is still divided by the full batch size B (upstream quirk, model.py:461-462). A batch with one
    label (N empty) crashed upstream; here all its rows are skipped (loss 0). When nothing survives,
    the loss is a float64 zero (model.py:460).
    """

    def __init__(self, opt):
        super(MultiSpringBalanceLoss, self).__init__()
        self.Delta = opt.Delta
        self.gamma_1 = opt.gamma_1
        self.gamma_2 = opt.gamma_2

    def mined_terms(self, scores, mask):
        """Per row of `scores`: (loss, keep) with keep False where a mined set is empty."""
        neg_inf = torch.tensor(float('-inf'), dtype=scores.dtype, device=scores.device)
        pos_inf = torch.tensor(float('inf'), dtype=scores.dtype, device=scores.device)
        max_neg = torch.where(mask, neg_inf, scores).max(dim=1, keepdim=True).values
        min_pos = torch.where(mask, scores, pos_inf).min(dim=1, keepdim=True).values
        hard_pos = mask & (scores < max_neg + self.Delta)
        hard_neg = ~mask & (scores > min_pos - self.Delta)
        keep = hard_pos.any(dim=1) & hard_neg.any(dim=1)
        zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
        pos_exp = torch.where(hard_pos, torch.exp(self.gamma_2 - self.gamma_1 * torch.where(hard_pos, scores, zero)), zero)
        neg_exp = torch.where(hard_neg, torch.exp(self.gamma_1 * torch.where(hard_neg, scores, zero) - self.gamma_2), zero)
        one = torch.ones((), dtype=scores.dtype, device=scores.device)
        pos_loss = 1.0 / self.gamma_1 * torch.log(torch.where(keep, pos_exp.sum(dim=1), one))
        neg_loss = 1.0 / self.gamma_1 * torch.log(torch.where(keep, neg_exp.sum(dim=1), one))
        return pos_loss + neg_loss, keep

    def forward(self, scores, labels):
        if isinstance(labels, (list, tuple)):
            labels = torch.cat([torch.as_tensor(l, dtype=torch.float32).reshape(-1) for l in labels])
        labels = labels.to(scores.device).float().reshape(-1)  # upstream compared float32 labels
        batch_size = scores.size(0)
        mask = labels.unsqueeze(0).eq(labels.unsqueeze(1))
        cap_loss, cap_keep = self.mined_terms(scores, mask)
        im_loss, im_keep = self.mined_terms(scores.t(), mask)
        keep = cap_keep & im_keep
        if not bool(keep.any()):
            return torch.zeros([], requires_grad=True, dtype=torch.float64, device=scores.device)
        zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
        cost_cap = torch.where(keep, cap_loss, zero).sum() / batch_size
        cost_img = torch.where(keep, im_loss, zero).sum() / batch_size
        return cost_cap + cost_img
