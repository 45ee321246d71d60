"""Ranking model of the second stage (AIS model_local.py `Multimodal_Model`): a siamese CTR
scorer over [image embedding, POI-text embedding, attention-pooled POI vectors]."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from avas.align_model import POSITION_IDS_KEY, CheckpointLayoutError, build_model
from avas.attention import AttentionSequencePoolingLayer
from avas.errors import MissingFileError
from avas.options import RANKING_CKPT, RANKING_MODEL_NAME as MODEL_NAME  # noqa: F401  (public names)
from common.checkpoint import load_checkpoint
from common.safeio import all_finite


class Multimodal_Model(nn.Module):
    """Attribute names and creation order give upstream's 670-key state_dict; the ALIGN is a
    submodule, so a ranking checkpoint carries (and overrides) its weights (quirk 16)."""

    def __init__(self, align_model, use_norm=1, dropout=0.1, freeze=1):
        super().__init__()
        self.freeze = freeze
        self.use_norm = use_norm
        self.linear1 = nn.Linear(1024, 512)
        self.linear3 = nn.Linear(512 * 3, 512)
        self.linear4 = nn.Linear(512, 256)
        self.linear2 = nn.Linear(256, 1)
        self.dropout = nn.Dropout(dropout)
        self.align_model = align_model
        self.attention_layer = AttentionSequencePoolingLayer(embedding_dim=512)
        if freeze:  # model_local.py:75-78
            align_model.eval()
            for param in align_model.parameters():
                param.requires_grad = False

    def forward(self, img_1, pois_feature, mean_poi_img_vec, poi_text_vec, poi_len):
        img_vec = self.align_model.encode_image(img_1, norm=self.use_norm)
        pois_input = self.dropout(self.linear1(torch.cat([mean_poi_img_vec, poi_text_vec], dim=-1)))
        pois_input = self.attention_layer(img_vec.unsqueeze(1), pois_input, poi_len).squeeze(1)
        score = torch.cat([img_vec, pois_feature, pois_input], 1)
        score = F.relu(self.dropout(self.linear3(score)))
        score = F.relu(self.dropout(self.linear4(score)))
        return self.linear2(score)  # (B, 1), no sigmoid


def load_ranking_state_dict(model, state_dict, source='ranking checkpoint'):
    """The released ckpt is a bare state_dict (670 keys incl. transformers-4.8's position_ids);
    loaded strictly once that buffer is dropped."""
    state_dict = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}
    state_dict.pop('align_model.' + POSITION_IDS_KEY, None)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise CheckpointLayoutError('%s: does not match Multimodal_Model (%d missing e.g. %s; %d unexpected '
                                    'e.g. %s)' % (source, len(missing), missing[:3], len(unexpected), unexpected[:3]))
    for key, value in state_dict.items():
        if own[key].shape != value.shape:
            raise CheckpointLayoutError('%s: %s has shape %s, the model expects %s'
                                        % (source, key, tuple(value.shape), tuple(own[key].shape)))
    model.load_state_dict(state_dict, strict=True)
    return model


def read_ranking_checkpoint(path):
    if not os.path.isfile(path):
        raise MissingFileError(
            '%s: ranking checkpoint not found. Download release v0.2 asset %s from '
            'https://github.com/youyuge34/AVAS/releases (or pass --ranking_ckpt).' % (path, RANKING_CKPT))
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointLayoutError('%s: expected a bare Multimodal_Model state_dict (a ranking .ckpt); is it '
                                    'another model\'s file?' % path)
    if not all_finite(obj):
        raise CheckpointLayoutError('%s: holds NaN/inf weights; use an earlier checkpoint' % path)
    return obj


def build_ranking_model(align_ckpt, bert_path, device, ranking_ckpt=None, use_norm=1, freeze=1):
    """model_local.Config + Multimodal_Model: ALIGN from align_ckpt, then (optionally) the ranking
    checkpoint, whose align_model.* weights replace it (quirk 16)."""
    model = Multimodal_Model(build_model(align_ckpt, bert_path), use_norm=use_norm, dropout=0.1, freeze=freeze)
    if ranking_ckpt:
        load_ranking_state_dict(model, read_ranking_checkpoint(ranking_ckpt), ranking_ckpt)
        print('Load Multimodal_Model success~')
    return model.to(device)


class PairScorer(nn.Module):
    """(s1, s2) of both images of a pair in one module call, so DistributedDataParallel sees a single
    forward per backward; each image still goes through its own Multimodal_Model call, as upstream."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, img_1, img_2, pois_feature, mean_poi_img_vec, poi_text_vec, poi_len):
        return (self.model(img_1, pois_feature, mean_poi_img_vec, poi_text_vec, poi_len),
                self.model(img_2, pois_feature, mean_poi_img_vec, poi_text_vec, poi_len))
