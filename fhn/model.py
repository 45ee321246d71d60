"""Fashion Hash Net: encoders, matching scores, losses, deploy and cold-start nets
(upstream polyvore/model/basemodel.py and fashionnet.py)."""
import collections
import logging
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import load_checkpoint
from common.errors import InputError
from common.runtime import resolve_device as runtime_device
from fhn import config as cfg
from fhn import param as P
from fhn.backbones import build_backbone
from fhn.fingerprint import check_item_fingerprint

LOGGER = logging.getLogger(__name__)

# per-pair scores of one batch: users, relaxed positive / negative, binary positive / negative
PairScores = collections.namedtuple("PairScores", "uidx posi nega posi_binary nega_binary")


def one_hot(uidx, num):
    uidx = uidx.view(-1, 1).long()
    out = torch.zeros(uidx.numel(), num, device=uidx.device)
    return out.scatter_(1, uidx, 1.0)


def contrastive_loss(margin, im, s):
    """VSE hinge loss per item (no masking of repeated items, quirk 16)."""
    size, dim = im.shape
    scores = im.matmul(s.t()) / dim
    diag = scores.diag()
    zeros = torch.zeros_like(scores)
    cost_im = torch.max(zeros, margin - diag.view(-1, 1) + scores)
    cost_s = torch.max(zeros, margin - diag.view(1, -1) + scores)
    vse_loss = cost_im.sum(dim=1) + cost_s.sum(dim=0) - 2 * margin
    return vse_loss / (size - 1)


def soft_margin_loss(x):
    return F.soft_margin_loss(x, torch.ones_like(x), reduction="none")


def code_stats(codes):
    """(fraction > 0, fraction |x| > 0.95) as logged by upstream's debugger threads."""
    codes = codes.detach().float()
    return (codes > 0).float().mean().item(), (codes.abs() > 0.95).float().mean().item()


class LatentCode(nn.Module):
    """feat(x) -> scale * x -> tanh (or raw features with without_binary)."""

    def __init__(self, param):
        super().__init__()
        self.param = param
        self.register_buffer("scale", torch.ones(1))

    def set_scale(self, value):
        self.scale.fill_(value)

    def feat(self, x):
        raise NotImplementedError

    def forward(self, x):
        x = self.feat(x)
        if self.param.without_binary:
            return x
        if self.param.scale_tanh:
            x = torch.mul(x, self.scale)
        if self.param.binary01:
            return 0.5 * (torch.tanh(x) + 1)
        return torch.tanh(x).view(-1, self.param.dim)


class TxtEncoder(LatentCode):
    def __init__(self, in_feature, param):
        super().__init__(param)
        self.encoder = nn.Sequential(
            nn.Linear(in_feature, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(1024, param.dim, bias=False),
        )

    def feat(self, x):
        return self.encoder(x)

    def init_weights(self):
        nn.init.normal_(self.encoder[0].weight.data, std=0.01)
        nn.init.constant_(self.encoder[0].bias.data, 0)
        nn.init.normal_(self.encoder[-1].weight.data, std=0.01)


class ImgEncoder(LatentCode):
    def __init__(self, in_feature, param):
        super().__init__(param)
        half = in_feature // 2
        self.encoder = nn.Sequential(
            nn.Dropout(),
            nn.Linear(in_feature, half),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(half, param.dim, bias=False),
        )

    def feat(self, x):
        return self.encoder(x)

    def init_weights(self):
        nn.init.normal_(self.encoder[1].weight.data, std=0.01)
        nn.init.constant_(self.encoder[1].bias.data, 0)
        nn.init.normal_(self.encoder[-1].weight.data, std=0.01)


class UserEncoder(LatentCode):
    def __init__(self, param):
        super().__init__(param)
        if param.share_user:
            self.encoder = nn.Sequential(
                nn.Linear(param.num_users, 128),
                nn.Softmax(dim=1),
                nn.Linear(128, param.dim, bias=False),
            )
        else:
            self.encoder = nn.Linear(param.num_users, param.dim, bias=False)

    def feat(self, x):
        return self.encoder(x)

    def init_weights(self):
        if self.param.share_user:
            nn.init.normal_(self.encoder[0].weight.data, std=0.01)
            nn.init.constant_(self.encoder[0].bias.data, 0.0)
            nn.init.normal_(self.encoder[-1].weight.data, std=0.01)
        else:
            nn.init.normal_(self.encoder.weight.data, std=0.01)


class CoreMat(nn.Module):
    """Weighted hamming similarity weights lambda [1, D]."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.Tensor(1, dim))
        self.init_weights()

    def init_weights(self):
        self.weight.data.fill_(1.0)

    def forward(self, x):
        return torch.mul(x, self.weight)

    def __repr__(self):
        return self.__class__.__name__ + "(dim=" + str(self.dim) + ")"


class LearnableScale(nn.Module):
    def __init__(self, init=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.Tensor(1).fill_(init))

    def forward(self, inputs):
        return self.weight * inputs

    def init_weights(self):
        pass

    def __repr__(self):
        return self.__class__.__name__ + "()"


def outfit_pairs(size):
    """Item-item pairs a<b; variable-length (4 slots) drops the top-top pair."""
    indx, indy = np.triu_indices(size, k=1)
    if size == 4:
        indx, indy = indx[1:], indy[1:]
    return indx, indy


def match_scores(core, hash_types, ulatent, ilatents, zero_iterm=False, zero_uterm=False,
                 scale=10.0):
    """Outfit score [N, 1] from a user code [N, D] and K item codes (fashionnet.py:233-274)."""
    size = len(ilatents)
    indx, indy = outfit_pairs(size)
    latents = torch.stack(ilatents, dim=1)
    x = latents * ulatent.unsqueeze(1).expand(-1, size, -1)
    y = latents[:, indx] * latents[:, indy]
    if hash_types == P.WEIGHTED_HASH_BOTH:
        score_u = core[0](x).mean(dim=(1, 2))
        score_i = core[1](y).mean(dim=(1, 2))
    elif hash_types == P.WEIGHTED_HASH_U:
        score_u = core(x).mean(dim=(1, 2))
        score_i = y.mean(dim=(1, 2))
    elif hash_types == P.WEIGHTED_HASH_I:
        # quirk 5 (upstream fashionnet.py:259): weights the user term, no item-item term
        score_u = x.mean(dim=(1, 2))
        score_i = core(x).mean(dim=(1, 2))
    elif hash_types == P.NO_WEIGHTED_HASH:
        score_u = core(x.mean(dim=(1, 2)))
        score_i = y.mean(dim=(1, 2))
    else:
        score_u = x.mean(dim=(1, 2))
        score_i = y.mean(dim=(1, 2))
    if zero_iterm:
        score = score_u * (scale * 2.0)
    elif zero_uterm:
        score = score_i * (scale * 2.0)
    else:
        score = (score_u + score_i) * scale
    return score.view(-1, 1)


class FashionNet(nn.Module):
    """Training / pair-accuracy net: forward(posi, nega, uidx) -> (losses, accuracies)."""

    def __init__(self, param, pretrained=None):
        super().__init__()
        self.param = param
        self.scale = 1.0
        if pretrained is None:
            pretrained = param.pretrained
        self.user_embedding = UserEncoder(param)
        if param.use_visual:
            self.features = build_backbone(param.backbone, pretrained, param.backbone_weights)
        num_encoder = 1 if param.single else cfg.NumCate
        if param.use_visual:
            feat_dim = self.features.dim
            self.encoder_v = nn.ModuleList([ImgEncoder(feat_dim, param) for _ in range(num_encoder)])
        if param.use_semantic:
            self.encoder_t = nn.ModuleList([TxtEncoder(2400, param) for _ in range(num_encoder)])
        if param.hash_types == P.NO_WEIGHTED_HASH:
            self.core = LearnableScale(1)
        elif param.hash_types == P.WEIGHTED_HASH_BOTH:
            self.core = nn.ModuleList([CoreMat(param.dim), CoreMat(param.dim)])
        else:
            self.core = CoreMat(param.dim)
        if param.use_semantic and param.use_visual:
            self.loss_weight = dict(rank_loss=1.0, binary_loss=None, vse_loss=0.1)
        else:
            self.loss_weight = dict(rank_loss=1.0, binary_loss=None)
        self.configure_trace()
        self._debug = {}

    # ----- bookkeeping -------------------------------------------------------------
    def configure_trace(self):
        """visdom windows (loss / accuracy / rank) and their legends (fashionnet.py:172-207)."""
        self.tracer = dict()
        self.tracer["loss"] = {
            "train.loss": "Train Loss(*)",
            "train.binary_loss": "Train Loss",
            "test.loss": "Test Loss(*)",
            "test.binary_loss": "Test Loss",
        }
        if self.param.use_semantic and self.param.use_visual:
            self.tracer["loss"].update({
                "train.vse_loss": "Train VSE Loss",
                "test.vse_loss": "Test VSE Loss",
                "train.rank_loss": "Train Rank Loss",
                "test.rank_loss": "Test Rank Loss",
            })
        self.tracer["accuracy"] = {
            "train.accuracy": "Train(*)",
            "train.binary_accuracy": "Train",
            "test.accuracy": "Test(*)",
            "test.binary_accuracy": "Test",
        }
        self.tracer["rank"] = {
            "test.auc": "AUC(*)",
            "test.binary_auc": "AUC",
            "test.ndcg": "NDCG(*)",
            "test.binary_ndcg": "NDCG",
        }

    def gather(self, results):
        losses, accuracy = results
        loss = 0.0
        gathered = {}
        for name, value in losses.items():
            weight = self.loss_weight[name]
            value = value.mean()
            gathered[name] = value.item()
            if weight:
                loss += value * weight
        gathered["loss"] = loss.item()
        return gathered, {k: v.sum().item() / v.numel() for k, v in accuracy.items()}

    def num_gropus(self):
        return len(self._modules)

    def set_scale(self, value):
        if not self.param.scale_tanh:
            return
        self.scale = value
        LOGGER.info("Set the scale to %.3f", value)
        for m in self.modules():
            if isinstance(m, LatentCode):
                m.set_scale(value)

    def init_weights(self):
        for model in self.children():
            if isinstance(model, nn.ModuleList):
                for m in model:
                    m.init_weights()
            else:
                model.init_weights()

    def debug(self):
        """Code statistics at display steps (upstream debugger threads, synchronous here)."""
        LOGGER.debug("Scale value: %.3f", self.scale)
        for key, (balance, ratio) in self._debug.items():
            LOGGER.debug("%s codes balance: %.3f(p) vs %.3f(n); |x|>0.95: %.3f percent",
                         key, balance, 1.0 - balance, ratio * 100)
        cores = self.core if isinstance(self.core, nn.ModuleList) else [self.core]
        for core in cores:  # quirk 6 fixed: upstream calls self.code.debug() and crashes
            LOGGER.debug("Core Mat: %s", core.weight.data.view(-1).tolist())

    # ----- scores ------------------------------------------------------------------
    def sign(self, x):
        if self.param.binary01:
            return ((x.detach() - 0.5).sign() + 1) / 2.0
        return x.detach().sign()

    def scores(self, ulatent, ilatents, scale=10.0):
        return match_scores(self.core, self.param.hash_types, ulatent, ilatents,
                            self.param.zero_iterm, self.param.zero_uterm, scale)

    def latent_code(self, items, encoder):
        cate = [0] * len(items) if self.param.single else self.param.cate_map
        return [encoder[c](x) for c, x in zip(cate, items)]

    def _pairwise_output(self, lcus, pos_feat, neg_feat, encoder):
        lcpi = self.latent_code(pos_feat, encoder)
        lcni = self.latent_code(neg_feat, encoder)
        pscore = self.scores(lcus, lcpi)
        nscore = self.scores(lcus, lcni)
        bcus = self.sign(lcus)
        bpscore = self.scores(bcus, [self.sign(h) for h in lcpi])
        bnscore = self.scores(bcus, [self.sign(h) for h in lcni])
        if self.param.variable_length:
            # quirk 16: VSE uses slots 1..3 only (balances the top category)
            latents = torch.stack(lcpi[1:] + lcni[1:], dim=1)
        else:
            latents = torch.stack(lcpi + lcni, dim=1)
        return (pscore, nscore, bpscore, bnscore), latents.view(-1, self.param.dim)

    def semantic_output(self, lcus, pos_feat, neg_feat):
        scores, latents = self._pairwise_output(lcus, pos_feat, neg_feat, self.encoder_t)
        self._debug["item.s"] = code_stats(latents)
        return scores, latents

    def visual_output(self, lcus, pos_img, neg_img):
        pos_feat = [self.features(x) for x in pos_img]
        neg_feat = [self.features(x) for x in neg_img]
        scores, latents = self._pairwise_output(lcus, pos_feat, neg_feat, self.encoder_v)
        self._debug["item.v"] = code_stats(latents)
        return scores, latents

    def forward(self, *inputs):
        loss, accuracy, _ = self.forward_with_scores(*inputs)
        return loss, accuracy

    def forward_with_scores(self, posi, nega, uidx):
        """(losses, accuracies, PairScores) -- the scores feed the training-time rank metric."""
        lcus = self.user_embedding(one_hot(uidx, self.param.num_users))
        self._debug["user"] = code_stats(lcus)
        loss = dict()
        if self.param.use_semantic and self.param.use_visual:
            score_v, latent_v = self.visual_output(lcus, posi[0], nega[0])
            score_s, latent_s = self.semantic_output(lcus, posi[1], nega[1])
            scores = [0.5 * (v + s) for v, s in zip(score_v, score_s)]
            loss.update(vse_loss=contrastive_loss(self.param.margin, latent_v, latent_s))
        elif self.param.use_visual:
            scores, _ = self.visual_output(lcus, posi, nega)
        elif self.param.use_semantic:
            scores, _ = self.semantic_output(lcus, posi, nega)
        else:
            raise ValueError("net_param: set use_visual and/or use_semantic")
        diff = scores[0] - scores[1]
        binary_diff = scores[2] - scores[3]
        loss.update(rank_loss=soft_margin_loss(diff), binary_loss=soft_margin_loss(binary_diff))
        accuracy = dict(accuracy=torch.gt(diff.data, 0), binary_accuracy=torch.gt(binary_diff.data, 0))
        pair_scores = PairScores(uidx.tolist(), *[s.detach().float().view(-1).tolist() for s in scores])
        return loss, accuracy, pair_scores

    # ----- codes (extract-features, cached evaluation) -------------------------------
    def user_latent(self, uidx=None):
        """Relaxed user codes [U, D] (all users) or of `uidx`."""
        device = self.user_embedding.scale.device
        if uidx is None:
            uidx = torch.arange(self.param.num_users, device=device)
        return self.user_embedding(one_hot(uidx.to(device), self.param.num_users))

    def get_user_binary_code(self, device="cpu"):
        return self.sign(self.user_latent()).cpu().numpy()

    def get_matching_weight(self):
        """(lambda_i, lambda_u, alpha) as upstream's extract-features stores them."""
        if self.param.hash_types == P.WEIGHTED_HASH_BOTH:
            return (self.core[1].weight.data.cpu().numpy(),
                    self.core[0].weight.data.cpu().numpy(), 1.0)
        if self.param.hash_types == P.WEIGHTED_HASH_I:
            return self.core.weight.data.cpu().numpy(), [], 1.0
        if self.param.hash_types == P.WEIGHTED_HASH_U:
            return [], self.core.weight.data.cpu().numpy(), 1.0
        return [], [], self.core.weight.data.cpu().numpy()

    def encoder_index(self, cate):
        return 0 if self.param.single else cate

    def item_latent(self, cate, data, branch):
        """Relaxed codes [N, D] of N items of category `cate` (branch 'v': images, 't': vectors)."""
        if branch == "v":
            return self.encoder_v[self.encoder_index(cate)](self.features(data))
        return self.encoder_t[self.encoder_index(cate)](data)

    def branches(self):
        return [b for b, on in (("v", self.param.use_visual), ("t", self.param.use_semantic)) if on]

    def scores_from_codes(self, users, items):
        """(score, binary score) [N, 1] from relaxed codes.

        users: [N, D]; items: {branch: list of K tensors [N, D]} -- same arithmetic as
        FashionNetDeploy.forward, with the CNN already applied.
        """
        outs = []
        for branch in self.branches():
            lcpi = items[branch]
            score = self.scores(users, lcpi)
            b_score = self.scores(self.sign(users), [self.sign(h) for h in lcpi])
            outs.append((score, b_score))
        if len(outs) == 2:
            return [0.5 * (v + s) for v, s in zip(outs[0], outs[1])]
        return list(outs[0])


class FashionNetDeploy(FashionNet):
    """Scoring net: forward(items, uidx) -> (score, binary score) of whole outfits."""

    def binary_v(self, items):
        latent = self.latent_code([self.features(x) for x in items], self.encoder_v)
        return [self.sign(h) for h in latent]

    def binary_t(self, items):
        return [self.sign(h) for h in self.latent_code(items, self.encoder_t)]

    def forward(self, *inputs):
        items, uidx = inputs
        return outfit_scores(self, items, uidx)

    def compute_codes(self, items):
        if self.param.use_semantic and self.param.use_visual:
            return self.binary_v(items[0]), self.binary_t(items[1])
        if self.param.use_visual:
            return self.binary_v(items)
        if self.param.use_semantic:
            return self.binary_t(items)
        raise ValueError("net_param: set use_visual and/or use_semantic")


def outfit_scores(net, items, uidx):
    """(score, binary score) [N, 1] of outfits for users `uidx` (upstream FashionNetDeploy.forward).

    items: K tensors (images or sentence vectors), or (images, vectors) with both branches.
    Works for FashionNet too (the accuracy configs load the pair net), and for ColdStart
    (its user_latent gives the cold-start codes).
    """
    branches = net.branches()
    if not branches:
        raise ValueError("net_param: set use_visual and/or use_semantic")
    per_branch = dict(zip(branches, items)) if len(branches) == 2 else {branches[0]: items}
    codes = {}
    if "v" in per_branch:
        codes["v"] = net.latent_code([net.features(x) for x in per_branch["v"]], net.encoder_v)
    if "t" in per_branch:
        codes["t"] = net.latent_code(list(per_branch["t"]), net.encoder_t)
    return net.scores_from_codes(net.user_latent(uidx), codes)


def to_device(data, device):
    if isinstance(data, (list, tuple)):
        return tuple(to_device(v, device) for v in data)
    if isinstance(data, torch.Tensor):
        return data.to(device)
    raise TypeError("data must contain tensors or lists; found {}".format(type(data)))



# ----- network construction and weight loading ----------------------------------------
def resolve_device(gpus, override=None):
    """gpus: [] / None -> CPU; a list -> cuda:gpus[0]; no CUDA -> CPU with one warning."""
    if override and override != "auto":
        return runtime_device(override)
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        warnings.warn("config names GPUs %s but CUDA is not available: running on CPU" % (gpus,),
                      RuntimeWarning)
        return torch.device("cpu")
    return torch.device("cuda", int(gpus[0]))


def load_state_dict_file(path):
    """A bare state_dict `*.net` (any PyTorch since 0.4, CUDA storages included) on CPU."""
    state = load_checkpoint(path, map_location="cpu")
    if isinstance(state, dict) and "net" in state and "optim" in state:
        state = state["net"]  # a *.solver file
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError("%s: not a Fashion Hash Net checkpoint (expected a state_dict of tensors, "
                         "found %s); give load_trained a *.net or *.solver file written by "
                         "fhn/scripts/run.py train" % (path, type(state).__name__))
    return state


def model_class(name):
    """The class named by net_param.name."""
    # fhn.coldstart subclasses FashionNetDeploy from this module: imported here, not at the top
    from fhn.coldstart import ColdStart

    named = {"FashionNet": FashionNet, "FashionNetDeploy": FashionNetDeploy, "ColdStart": ColdStart}
    if name not in named:
        raise InputError("net_param.name must be one of %s, got %r" % (list(named), name))
    return named[name]


def load_weights(net, state_dict, path):
    """load_state_dict with a message naming the file and the keys/shapes that differ."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = ["%s %s in the file, %s here" % (k, tuple(state_dict[k].shape), tuple(own[k].shape))
              for k in sorted(set(own) & set(state_dict)) if state_dict[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shapes differ: " + "; ".join(shapes[:4]))
        if missing:
            parts.append("missing keys: " + ", ".join(missing[:4]))
        if unexpected:
            parts.append("unexpected keys: " + ", ".join(unexpected[:4]))
        raise InputError("%s: does not fit net_param (%s, num_users=%s, dim=%s, backbone=%s): %s; "
                         "is it another model's or another paper's checkpoint?"
                         % (path, net.param.name, net.param.num_users, net.param.dim,
                            net.param.backbone, " | ".join(parts)))
    net.load_state_dict(state_dict)


def get_net(config, device="cpu", data_param=None):
    """Build net_param.name, load `load_trained` (map_location cpu, quirk 3 fixed).

    data_param: the evaluation data; the checkpoint's item-list fingerprint must match it.
    """
    net_param = config.net_param
    LOGGER.info("Initializing %s", net_param.name)
    cls = model_class(net_param.name)
    # quirk 4 fixed: no ImageNet weights when a checkpoint replaces them anyway
    pretrained = net_param.pretrained and not (config.load_trained or config.resume)
    net = cls(net_param, pretrained=pretrained)
    if net_param.name == "ColdStart":
        # upstream order (quirk 19): cold-start codes come from the net before loading
        net.to(device)
        net.eval()
        net.prepare_codes(device)
    if config.load_trained:
        LOGGER.info("Loading pre-trained model from %s.", config.load_trained)
        state_dict = load_state_dict_file(config.load_trained)
        if data_param is not None:
            check_item_fingerprint(state_dict, config.load_trained, data_param,
                                   cold_start=bool(config.cold_start) or net_param.name == "ColdStart")
        if config.cold_start:
            LOGGER.info("Reset the user embedding")
            weight = "user_embedding.encoder.weight"
            state_dict[weight] = torch.zeros(net_param.dim, net_param.num_users)
            load_weights(net, state_dict, config.load_trained)
            net.user_embedding.init_weights()
        else:
            load_weights(net, state_dict, config.load_trained)
    elif config.resume:
        LOGGER.info("Training resume from %s.", config.resume)
    else:
        LOGGER.info("Loading weights from backbone %s.", net_param.backbone)
        net.init_weights()
    LOGGER.info("Copying net to %s", device)
    return net.to(device)
