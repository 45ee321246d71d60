"""The HSL model (upstream HSL/model.py): box/text transformer encoders, the four similarity
levels, the 1/0.5/1/0.5 loss, and the training-step wrapper object with optimizer and schedule."""
import torch
import torch.nn as nn
from torch.nn.utils import clip_grad_norm_

from common.runtime import autocast, make_grad_scaler, wrap_ddp
from hsl.loss import ContrastiveLoss
from hsl.mca import AttFlat
from hsl.utils import GLOVE_DIM, LogCollector, l2norm

# Hard-coded upstream (model.py:34-36, 97-99): --img_num_layers / --txt_num_layers are ignored.
NHEAD = 4
IMG_DEPTH = 3
TXT_DEPTH = 2
# Loss and evaluation weights of the four similarity levels (model.py:281, evaluation.py:46).
LEVEL_WEIGHTS = (1.0, 0.5, 1.0, 0.5)


def _encoder(layer, depth):
    # upstream passes the registered template `encoder_layer`; nn.TransformerEncoder deep-copies it,
    # so all layers start equal to the template, which stays in the state_dict (keys kept).
    return nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)


def padding_mask(lengths, size):
    """(N, size) bool, True at positions >= lengths[i] (the transformers' key-padding mask)."""
    return torch.arange(size, device=lengths.device)[None, :] >= lengths[:, None]


class ImageEncoder(nn.Module):
    """Boxes (N, B, img_dim) -> two object-level (N, B, e) and two image-level (N, F) embeddings."""

    def __init__(self, opt, img_dim, embed_size, num_layers, d_model, no_imgnorm=False):
        super().__init__()
        self.no_imgnorm = no_imgnorm  # stored but ignored upstream (model.py:82-85): always normalised
        self.img_dim = img_dim
        self.in_fc = nn.Linear(img_dim, d_model)
        self.out_fc = nn.Linear(d_model, embed_size)
        self.fc1 = nn.Linear(d_model, embed_size)
        self.fc2 = nn.Linear(embed_size, d_model)
        self.fc3 = nn.Linear(embed_size, d_model)
        self.dropout = nn.Dropout(0.1)
        self.attflat_img = AttFlat(opt)  # one module shared by both image-level branches
        self.encoder_layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=NHEAD)
        self.transformer1 = _encoder(self.encoder_layer, IMG_DEPTH)
        self.transformer2 = _encoder(self.encoder_layer, IMG_DEPTH)

    def forward(self, x, num_boxes, x_mask):
        x = self.in_fc(x)
        mask = padding_mask(num_boxes.to(x.device), x.size(1))
        h1 = self.transformer1(x.transpose(0, 1), src_key_padding_mask=mask).transpose(0, 1)
        h2 = self.transformer2(h1.transpose(0, 1), src_key_padding_mask=mask).transpose(0, 1)
        x2 = self.dropout(self.fc1(h1))       # object level, shallow
        x1 = self.dropout(self.out_fc(h2))    # object level, deep
        x3 = self.attflat_img(self.fc2(torch.relu(x1)), x_mask)  # image level, deep
        x4 = self.attflat_img(self.fc3(torch.relu(x2)), x_mask)  # image level, shallow
        return l2norm(x1), l2norm(x2), l2norm(x3), l2norm(x4)


class TextEncoder(nn.Module):
    """Word vectors (N, L, w) -> deep/shallow text embeddings (masked means incl. <start>/<end>)."""

    def __init__(self, word_dim, embed_size, num_layers, no_txtnorm=False):
        super().__init__()
        self.embed_size = embed_size
        self.no_txtnorm = no_txtnorm
        self.encoder_layer = nn.TransformerEncoderLayer(d_model=word_dim, nhead=NHEAD)
        self.transformer1 = _encoder(self.encoder_layer, TXT_DEPTH)
        self.transformer2 = _encoder(self.encoder_layer, TXT_DEPTH)
        self.fc1 = nn.Linear(word_dim, embed_size)
        self.fc2 = nn.Linear(word_dim, embed_size)
        self.fc3 = nn.Linear(word_dim, embed_size)
        self.fc4 = nn.Linear(word_dim, embed_size)
        self.dropout = nn.Dropout(0.1)

    @staticmethod
    def masked_mean(x, mask, lengths):
        return x.masked_fill(mask[:, :, None], 0).sum(dim=1) / lengths[:, None].to(x.dtype)

    def forward(self, x, lengths):
        lengths = lengths.to(x.device)
        mask = padding_mask(lengths, x.size(1))
        t1 = self.transformer1(x.transpose(0, 1), src_key_padding_mask=mask).transpose(0, 1)
        out2 = self.masked_mean(t1, mask, lengths)
        t2 = self.transformer2(t1.transpose(0, 1), src_key_padding_mask=mask).transpose(0, 1)
        out = self.masked_mean(t2, mask, lengths)
        out1 = self.dropout(self.fc1(out))
        out3 = self.dropout(self.fc2(out2))
        out4 = self.dropout(self.fc3(out))
        out5 = self.dropout(self.fc4(out2))
        if not self.no_txtnorm:
            out1, out3, out4, out5 = l2norm(out1), l2norm(out3), l2norm(out4), l2norm(out5)
        return out1, out3, out4, out5


class WordEmbedding(nn.Module):
    """Embedding(V, word_dim), or with GloVe Embedding(V, 300) + Linear(300, word_dim)."""

    def __init__(self, vocab_size, word_dim, we_parameter):
        super().__init__()
        self.we_parameter = we_parameter is not None
        if we_parameter is not None:
            self.embed = nn.Embedding(vocab_size, GLOVE_DIM)
            self.fc = nn.Linear(GLOVE_DIM, word_dim)
        else:
            self.embed = nn.Embedding(vocab_size, word_dim)
        self.init_weights(we_parameter)

    def forward(self, x):
        x = self.embed(x)
        if self.we_parameter:
            x = self.fc(x)
        return x

    def init_weights(self, we_parameter):
        if we_parameter is not None:
            self.embed.weight.data.copy_(torch.as_tensor(we_parameter))
        else:
            self.embed.weight.data.uniform_(-0.1, 0.1)


def make_mask(feature):
    """(N, 1, 1, B) bool, True on all-zero (padded) boxes; AttFlat's mask (model.py:346)."""
    return (torch.sum(torch.abs(feature), dim=-1) == 0).unsqueeze(1).unsqueeze(2)


class HSLNet(nn.Module):
    """The three upstream modules in one nn.Module, so DDP/AMP can wrap the whole forward."""

    def __init__(self, opt):
        super().__init__()
        # creation order = upstream's, so a seed gives upstream's initial weights
        self.img_enc = ImageEncoder(opt, opt.img_dim, opt.embed_size, opt.img_num_layers,
                                    opt.d_model, opt.no_imgnorm)
        self.txt_enc = TextEncoder(opt.word_dim, opt.embed_size, opt.txt_num_layers, opt.no_txtnorm)
        self.word_embed = WordEmbedding(opt.vocab_size, opt.word_dim, opt.we_parameter)
        # The template layers never run, so they never get a gradient; freezing them changes no
        # number and lets DDP work without find_unused_parameters.
        self.img_enc.encoder_layer.requires_grad_(False)
        self.txt_enc.encoder_layer.requires_grad_(False)

    def encode_images(self, images, num_boxes):
        return self.img_enc(images, num_boxes, make_mask(images))

    def encode_text(self, captions, lengths):
        return self.txt_enc(self.word_embed(captions), lengths)

    def forward(self, images, num_boxes, captions, lengths):
        img_emb, img_emb2, img_emb3, img_emb4 = self.encode_images(images, num_boxes)
        cap_emb, cap_emb2, cap_emb3, cap_emb4 = self.encode_text(captions, lengths)
        return img_emb, cap_emb, img_emb2, cap_emb2, img_emb3, cap_emb3, img_emb4, cap_emb4


def topk_from_agg(score_agg, fix_topk=False):
    """k of `top<k>`. Upstream (model.py:335) reads only the last character: top10 -> 0 -> NaN."""
    return int(score_agg[3:]) if fix_topk else int(score_agg[-1])


def check_score_agg(score_agg, fix_topk=False):
    if score_agg in ('max', 'mean', 'sum'):
        return
    if score_agg.startswith('top'):
        try:
            topk_from_agg(score_agg, fix_topk)
            return
        except ValueError:
            pass
    raise ValueError("--score_agg must be max, mean, sum or top<k> (got %r)" % score_agg)


def aggregate_box_scores(sims, num_boxes, score_agg, fix_topk=False):
    """Aggregate (..., N_img, B) box scores over each image's first num_boxes[j] boxes."""
    num_boxes = num_boxes.to(sims.device)
    pad = padding_mask(num_boxes, sims.size(-1))
    if score_agg == 'max':
        return sims.masked_fill(pad, float('-inf')).max(dim=-1)[0]
    if score_agg in ('mean', 'sum'):
        total = sims.masked_fill(pad, 0).sum(dim=-1)
        return total / num_boxes.to(sims.dtype) if score_agg == 'mean' else total
    if score_agg.startswith('top'):
        k = topk_from_agg(score_agg, fix_topk)
        ordered = sims.masked_fill(pad, float('-inf')).sort(dim=-1, descending=True)[0]
        taken = torch.clamp(num_boxes, max=k)  # k = 0 gives 0/0 = NaN, as upstream
        keep = padding_mask(taken, sims.size(-1))
        return ordered.masked_fill(keep, 0).sum(dim=-1) / taken.to(sims.dtype)
    raise ValueError("unknown --score_agg %r" % score_agg)


def cal_scores(img_emb, cap_emb, num_boxes, score_agg, fix_topk=False):
    """Object level: S[c, j] = agg_b <cap_c, img_{j,b}>; img (N_img, B, e), cap (N_cap, e)."""
    sims = torch.einsum('ce,jbe->cjb', cap_emb, img_emb)
    return aggregate_box_scores(sims, num_boxes, score_agg, fix_topk)


def cal_scores2(img_emb, cap_emb):
    """Image level: S = cap @ img^T."""
    return torch.mm(cap_emb, img_emb.t())


class HSL(object):
    """Upstream's model object (not an nn.Module): encoders + optimizer + schedule + train step.

    state_dict() is upstream's list [img_enc, txt_enc, word_embed], so checkpoints stay compatible.
    """

    def __init__(self, opt, device='cpu', dist_info=None):
        self.device = torch.device(device)
        self.grad_clip = opt.grad_clip
        self.score_agg = opt.score_agg
        self.fix_topk = getattr(opt, 'fix_topk', False)
        check_score_agg(self.score_agg, self.fix_topk)
        self.amp = bool(getattr(opt, 'amp', False))
        self.net = HSLNet(opt).to(self.device)
        self.img_enc, self.txt_enc, self.word_embed = self.net.img_enc, self.net.txt_enc, self.net.word_embed
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
        self.train_net = wrap_ddp(self.net, dist_info) if dist_info is not None else self.net

        self.criterion = ContrastiveLoss()
        self.criterion2 = ContrastiveLoss()
        self.criterion3 = ContrastiveLoss()
        self.criterion4 = ContrastiveLoss()

        params = list(self.txt_enc.parameters())
        params += list(self.img_enc.parameters())
        params += list(self.word_embed.parameters())
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=opt.learning_rate)
        self.lr_scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=opt.step_size, gamma=opt.decay_rate)
        self.scaler = make_grad_scaler(self.device, self.amp)
        self.Eiters = 0
        self.logger = LogCollector()

    def state_dict(self):
        return [self.img_enc.state_dict(), self.txt_enc.state_dict(), self.word_embed.state_dict()]

    def load_state_dict(self, state_dict):
        self.img_enc.load_state_dict(state_dict[0])
        self.txt_enc.load_state_dict(state_dict[1])
        self.word_embed.load_state_dict(state_dict[2])

    def train_start(self):
        """Train mode; Eiters restarts every epoch as upstream (model.py:236)."""
        self.Eiters = 0
        self.net.train()
        self.logger.reset()

    def val_start(self):
        self.net.eval()

    def _to_device(self, *tensors):
        return [t.to(self.device, non_blocking=True) for t in tensors]

    def forward_emb(self, images, num_boxes, captions, lengths, no_grad=False):
        """(img_emb, cap_emb, img_emb2, cap_emb2, img_emb3, cap_emb3, img_emb4, cap_emb4)."""
        images, num_boxes, captions, lengths = self._to_device(images, num_boxes, captions, lengths)
        net = self.net if no_grad else self.train_net
        with torch.set_grad_enabled(not no_grad), autocast(self.device, self.amp):
            return net(images, num_boxes, captions, lengths)

    def score_levels(self, embs, num_boxes):
        """The four score matrices (captions x images) from forward_emb's output."""
        img_emb, cap_emb, img_emb2, cap_emb2, img_emb3, cap_emb3, img_emb4, cap_emb4 = embs
        return (cal_scores(img_emb, cap_emb, num_boxes, self.score_agg, self.fix_topk),
                cal_scores(img_emb2, cap_emb2, num_boxes, self.score_agg, self.fix_topk),
                cal_scores2(img_emb3, cap_emb3), cal_scores2(img_emb4, cap_emb4))

    def forward_loss(self, sims, sims2, sims3, sims4, global_step=None, **kwargs):
        loss = self.criterion(sims)
        loss2 = self.criterion2(sims2)
        loss3 = self.criterion3(sims3)
        loss4 = self.criterion4(sims4)
        return loss + 0.5 * loss2 + loss3 + 0.5 * loss4

    def train_emb(self, global_step, images, num_boxes, captions, lengths, ids=None, *args):
        """One training step; returns the loss value."""
        self.Eiters += 1
        self.logger.update('lr', self.optimizer.param_groups[0]['lr'])
        embs = self.forward_emb(images, num_boxes, captions, lengths)
        with autocast(self.device, self.amp):
            scores, scores2, scores3, scores4 = self.score_levels(embs, num_boxes)
            self.optimizer.zero_grad()
            loss = self.forward_loss(scores, scores2, scores3, scores4, global_step)
        self.logger.update('Cnt Le', loss.item(), scores.size(0))
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def lr_step(self):
        self.lr_scheduler.step()
