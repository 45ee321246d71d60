"""LHSC and SGRAF models in upstream's shape: encoders, similarity head (per-caption loop), loss, wrapper.

LHSC (upstream model.py) = SGRAF's SAF similarity network with two extra encoder stages:
4x IM_GCN on the regions and 4x TextAttn on the word embeddings. `--model SGRAF` builds plain
SGRAF (Paranioar/SGRAF model.py) with `--module_name SGR|SAF`. State-dict keys match upstream:
LHSC's head is `cal_sim_base_atten.*`, SGRAF's `SAF_module.*` / `SGR_module.<k>.*`.
The similarity head's fast paths live beside it: lhsc/fasttrain.py (training) and lhsc/fastsim.py
(evaluation); the DDP helpers in lhsc/ddp.py.
"""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from common.runtime import autocast
from lhsc.ddp import GatherColumns, gather_batch, sum_gradients  # noqa: F401 (sum_gradients: public here too)
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

    def forward(self, local, raw_global):
        l_emb = self.embedding_local(local)
        g_emb = self.embedding_global(raw_global)
        weights = torch.softmax(self.embedding_common(l_emb * g_emb.unsqueeze(1)).squeeze(2), dim=1)
        return l2norm((weights.unsqueeze(2) * local).sum(dim=1), dim=-1)


class TextSA(nn.Module):
    """Global caption by self-attention over its words."""

    def __init__(self, embed_dim, dropout_rate):
        super(TextSA, self).__init__()
        self.embedding_local = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_global = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_common = nn.Sequential(nn.Linear(embed_dim, 1))
        xavier_init_(self)

    def forward(self, local, raw_global):
        l_emb = self.embedding_local(local)
        g_emb = self.embedding_global(raw_global)
        weights = torch.softmax(self.embedding_common(l_emb * g_emb.unsqueeze(1)).squeeze(2), dim=1)
        return l2norm((weights.unsqueeze(2) * local).sum(dim=1), dim=-1)


class GraphReasoning(nn.Module):
    """SGRAF's SGR step over the alignment graph (nodes = global + words): (B, L+1, S) -> (B, L+1, S)."""

    def __init__(self, sim_dim):
        super(GraphReasoning, self).__init__()
        self.graph_query_w = nn.Linear(sim_dim, sim_dim)
        self.graph_key_w = nn.Linear(sim_dim, sim_dim)
        self.sim_graph_w = nn.Linear(sim_dim, sim_dim)
        self.relu = nn.ReLU()
        xavier_init_(self)

    def forward(self, sim_emb):
        sim_query = self.graph_query_w(sim_emb)
        sim_key = self.graph_key_w(sim_emb)
        sim_edge = torch.softmax(torch.bmm(sim_query, sim_key.permute(0, 2, 1)), dim=-1)
        return self.relu(self.sim_graph_w(torch.bmm(sim_edge, sim_emb)))


class AttentionFiltration(nn.Module):
    """SAF: gate each alignment node by sigmoid(BN(w.x)), L1-normalised, and aggregate.

    Called SimilarityCalculation in LHSC (prefix `cal_sim_base_atten.`), AttentionFiltration in
    SGRAF (prefix `SAF_module.`); the computation is identical.
    """

    def __init__(self, sim_dim):
        super(AttentionFiltration, self).__init__()
        self.attn_sim_w = nn.Linear(sim_dim, 1)
        self.bn = nn.BatchNorm1d(1)
        self.gather_stats = False  # DDP: ranks hold caption blocks; lhsc/fasttrain.py updates with every rank's stats
        xavier_init_(self)

    def forward(self, sim_emb):
        """sim_emb (Ni, n+1, S) of ONE caption (train-mode BN statistics over this caption)."""
        sim_attn = l1norm(torch.sigmoid(self.bn(self.attn_sim_w(sim_emb).permute(0, 2, 1))), dim=-1)
        return l2norm(torch.matmul(sim_attn, sim_emb).squeeze(1), dim=-1)


SimilarityCalculation = AttentionFiltration  # LHSC's name for the same module


def SCAN_attention(query, context, smooth, eps=1e-8):
    """Word-to-region attention: query (B, n, d), context (B, 36, d) -> (B, n, d). Upstream's op
    sequence, its transposed copies and the transposed (non-contiguous) result included: this is
    the reference loop's attention, and what it costs is the benchmarks' baseline."""
    attn = torch.bmm(context, query.transpose(1, 2))                          # (B, 36, n)
    attn = l2norm(F.leaky_relu(attn, 0.1), 2)                                  # over the words
    attn = torch.softmax(attn.transpose(1, 2).contiguous() * smooth, dim=2)    # (B, n, 36)
    attn_t = attn.transpose(1, 2).contiguous()                                 # (B, 36, n)
    weighted = torch.bmm(context.transpose(1, 2), attn_t)                      # (B, d, n)
    return l2norm(weighted.transpose(1, 2), dim=-1)


class EncoderSimilarity(nn.Module):
    """Image-caption similarity (Ni, Nc) from region (Ni, 36, E) and word (Nc, L, E) embeddings.

    head: 'LHSC' (SAF head named cal_sim_base_atten), 'SAF' (SAF_module) or 'SGR' (SGR_module).
    `forward` is upstream's per-caption loop, the reference implementation; the fast paths with
    the same arguments are lhsc/fasttrain.py (training, autograd) and lhsc/fastsim.py (evaluation).
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

    def forward(self, img_emb, cap_emb, cap_lens):
        """Upstream's loop over captions (model.py:279-318), each against all images."""
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

    forward_loop = forward  # the name evaluation's --reference and the tests use


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


class LHSC(object):
    """Upstream's wrapper (model.py `LHSC` / SGRAF's `SGRAF`): three encoders, loss, Adam, Eiters.

    state_dict() is upstream's list [img_enc, txt_enc, sim_enc]. `device`, `amp` and
    `dist_info` (common.runtime.DistInfo) are port additions; defaults give upstream behaviour.
    `reference=True` trains with upstream's per-caption loop instead of lhsc/fasttrain.py.
    """
    loss_name = 'a/Loss'  # SGRAF logs 'Loss'

    def __init__(self, opt, device=None, amp=False, dist_info=None, reference=False):
        from common.runtime import make_grad_scaler
        from common.logger import LogCollector
        from lhsc import fasttrain  # imports this module: here, not at the top
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
        # training scores: lhsc/fasttrain.py, or upstream's per-caption loop (EncoderSimilarity.forward)
        self.similarity = EncoderSimilarity.__call__ if reference else fasttrain.scores
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
        return self.similarity(self.sim_enc, img_embs, cap_embs, cap_lens)

    def forward_loss(self, sims, **kwargs):
        loss = self.criterion(sims)
        self.logger.update(self.loss_name, loss.item(), sims.size(0))
        return loss

    def batch_scores(self, images, captions, lengths):
        """(B, B) training scores. Distributed: every rank encodes the gathered global batch
        (cheap, identical), computes the score columns of its share of captions (the costly
        part), and the blocks are all-gathered into the full matrix."""
        if not self.distributed:
            with autocast(self.device, self.amp):
                img_embs, cap_embs, cap_lens = self.forward_emb(images, captions, lengths)
                return self.forward_sim(img_embs, cap_embs, cap_lens).float()
        images, captions, lengths = gather_batch(images, captions, lengths, self.device)
        # Identical dropout masks in the (replicated) encoders on every rank: seeded per step in a
        # forked RNG, so the caller's global random stream is left as it was.
        cuda = [torch.device(self.device).index or 0] if torch.device(self.device).type == 'cuda' else []
        with torch.random.fork_rng(devices=cuda), autocast(self.device, self.amp):
            torch.manual_seed(self.step_seed + self.Eiters)
            img_embs, cap_embs, cap_lens = self.forward_emb(images, captions, lengths)
            widths = [len(c) for c in np.array_split(np.arange(len(cap_lens)), self.dist_info.world_size)]
            start = sum(widths[:self.dist_info.rank])
            stop = start + widths[self.dist_info.rank]
            block = self.forward_sim(img_embs, cap_embs[start:stop], cap_lens[start:stop]).float()
        return GatherColumns.apply(block, widths)

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
