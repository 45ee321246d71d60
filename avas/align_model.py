"""ALIGN dual encoder of the recall stage (AIS align_model.py) with AVAS's optional MKG head.

Image tower: efficientnet_pytorch EfficientNet-b3 (`from_name`, static "same" padding computed for
300 px while 224 px images are fed -- spec §4.1, quirk 5) -> Linear(512, 512).
Text tower: transformers BertModel with config.json's layer count overwritten to 4 (quirk 3); the
CLS hidden state (not the pooler, quirk 4) -> Linear(H, 512). Both L2-normalised unless norm=False.
"""
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from efficientnet_pytorch import EfficientNet
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from avas.errors import MissingFileError
from avas.text_batches import encode_texts_batched
from avas.tokenization import build_tokenizer, tokenize, vocab_fingerprint
from common.checkpoint import load_checkpoint
from common.errors import InputError
from common.safeio import all_finite

POSITION_IDS_KEY = 'text_model.embeddings.position_ids'  # persistent buffer in transformers 4.8.1
HAS_CATE, HAS_IMAGE, HAS_TITLE = 0, 1, 2  # AVAS relation ids (3 = padding)
MKG_KEYS = ('relations_emb.weight', 'linear_relation.weight', 'linear_relation.bias')


def load_bert_config(bert_path, bert_layers_num=4):
    path = os.path.join(bert_path, 'config.json')
    if not os.path.isfile(path):
        raise MissingFileError(
            '%s: BERT config not found. --bert_path must be a folder with the bert-base-chinese '
            'config.json and vocab.txt (copies ship in avas/data/bert).' % path)
    config = BertConfig.from_json_file(path)
    config.num_hidden_layers = bert_layers_num  # align_model.py:67-69 overrides config.json
    return config


class ALIGN(nn.Module):
    def __init__(self, efficientnet_type='efficientnet-b3', bert_layers_num=4, image_weights_path=None,
                 bert_path=None, init_bert_weights=False, feature_dim=512, with_mkg=False):
        super().__init__()
        if image_weights_path is None:
            self.image_model = EfficientNet.from_name(efficientnet_type, num_classes=feature_dim)
        else:
            self.image_model = EfficientNet.from_pretrained(
                efficientnet_type, weights_path=image_weights_path, num_classes=feature_dim)

        config = load_bert_config(bert_path, bert_layers_num)
        self.tokenizer = build_tokenizer(bert_path)
        if init_bert_weights:
            self.text_model = _pretrained_bert(bert_path, config)
        else:
            self.text_model = BertModel(config=config)

        self.logit_scale = nn.Parameter(torch.tensor(1.))
        self.image_hidden_layer = nn.Linear(feature_dim, feature_dim)
        self.text_hidden_layer = nn.Linear(config.hidden_size, feature_dim)
        self.with_mkg = with_mkg
        if with_mkg:  # AVAS align_model_with_MKG.py:86-93
            self.relation_count = 3  # has_cate, has_image, has_title
            self.relation_dim = 100
            self.relations_emb = _init_relation_emb(self.relation_count, self.relation_dim)
            self.linear_relation = nn.Linear(self.relation_dim, feature_dim)

    def get_tokenizer(self):
        return self.tokenizer

    def encode_image(self, image, norm=True):
        embeddings = self.image_hidden_layer(self.image_model(image))
        return F.normalize(embeddings, p=2, dim=1) if norm else embeddings

    def encode_text(self, text, norm=True):
        outputs = self.text_model(input_ids=text['input_ids'], attention_mask=text['attention_mask'])
        embeddings = self.text_hidden_layer(outputs.last_hidden_state[:, 0])
        return F.normalize(embeddings, p=2, dim=1) if norm else embeddings

    def forward(self, image, text, mkg=None):
        """CLIP loss of matched (image, text) rows. With `mkg` also the TransE margin loss per
        triple and (loss_clip, mkg_loss, d_pos, d_neg) is returned like AVAS:
        mkg='in_batch': head = the row's text, relation has_image, tail = the row's image, negative
        tail = the previous row's image (cheap: reuses the CLIP embeddings; the port's training choice);
        mkg=dict(head_text, relation, tail_text, tail_img, tail_type, neg_tail_text, neg_tail_img):
        AVAS's explicit triples (see mkg_distances)."""
        image_embeddings = self.encode_image(image)
        text_embeddings = self.encode_text(text)
        loss_clip = clip_loss(image_embeddings, text_embeddings, self.logit_scale)
        if mkg is None:
            return loss_clip
        if isinstance(mkg, str) and mkg == 'in_batch':
            relation = torch.full((image.shape[0],), HAS_IMAGE, dtype=torch.long, device=image.device)
            d_pos = self.transe_distance(text_embeddings, relation, image_embeddings)
            d_neg = self.transe_distance(text_embeddings, relation, image_embeddings.roll(1, dims=0))
        else:
            d_pos, d_neg = self.mkg_distances(**mkg)
        mkg_loss = torch.clamp(d_pos - d_neg + 1.0, min=0)  # MarginRankingLoss(margin=1, y=-1)
        return loss_clip, mkg_loss, d_pos, d_neg

    def transe_distance(self, head, relation, tail):
        """||normalize(h) + normalize(linear_relation(emb(r))) - normalize(t)||_1 per row."""
        rel = self.linear_relation(self.relations_emb(relation.reshape(-1)))
        return (F.normalize(head, p=2, dim=1) + F.normalize(rel, p=2, dim=1)
                - F.normalize(tail, p=2, dim=1)).norm(p=1, dim=1)

    def mkg_distances(self, head_text, relation, tail_text, tail_img, tail_type, neg_tail_text,
                      neg_tail_img):
        """TransE distances for positive and negative tails, as AVAS intends.

        AVAS concatenates the text and image tail embeddings with torch.cat(dim=0) and then indexes
        [type, arange, :], which crashes; the intent (quirk 26) is a stack and a per-row pick of
        the text (type 1) or image (type 2) tail. tail_type is not modified in place here."""
        head = self.encode_text(head_text)
        pick = tail_type.reshape(-1).long() - 1
        rows = torch.arange(pick.shape[0], device=pick.device)
        pos = torch.stack([self.encode_text(tail_text), self.encode_image(tail_img)])[pick, rows]
        neg = torch.stack([self.encode_text(neg_tail_text), self.encode_image(neg_tail_img)])[pick, rows]
        return self.transe_distance(head, relation, pos), self.transe_distance(head, relation, neg)


def clip_loss(image_embeddings, text_embeddings, logit_scale):
    """align_model.py:113-120: logit_scale multiplies the cosine matrix (it is not exp'd)."""
    sims = image_embeddings @ text_embeddings.t() * logit_scale
    labels = torch.arange(sims.shape[0], dtype=torch.long, device=sims.device)
    return (F.cross_entropy(sims, labels) + F.cross_entropy(sims.t(), labels)) / 2


def _init_relation_emb(relation_count, dim):
    emb = nn.Embedding(relation_count + 1, dim, padding_idx=relation_count)
    bound = 6 / np.sqrt(dim)
    emb.weight.data.uniform_(-bound, bound)
    emb.weight.data[:-1, :].div_(emb.weight.data[:-1, :].norm(p=1, dim=1, keepdim=True))
    return emb


def _pretrained_bert(bert_path, config):
    names = ('pytorch_model.bin', 'model.safetensors')
    if not any(os.path.isfile(os.path.join(bert_path, n)) for n in names):
        raise FileNotFoundError(
            '%s: no BERT weights (%s). Download bert-base-chinese from '
            'https://huggingface.co/bert-base-chinese into that folder, or drop --init_bert_weights '
            'to start the text tower from random weights.' % (bert_path, ' / '.join(names)))
    hf_logging.set_verbosity_error()  # the 8 unused layers of the 12-layer file are expected
    return BertModel.from_pretrained(bert_path, config=config, local_files_only=True)


class CheckpointLayoutError(InputError, ValueError):
    """A checkpoint whose keys/shapes do not fit the model (another paper's, another config)."""


def state_dict_from_checkpoint(obj, path):
    """align_model.pth is {'epoch', 'min_loss', 'state_dict'}; only ['state_dict'] is read."""
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointLayoutError('%s: expected {"state_dict": {...}} or a state_dict of tensors (an ALIGN '
                                    'checkpoint such as align_model.pth); is it another model\'s file?' % path)
    if not all_finite(obj):
        raise CheckpointLayoutError('%s: holds NaN/inf weights; use an earlier checkpoint' % path)
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in obj.items()}


def check_vocabulary(model, ckpt, path):
    """Checkpoints written by train_align.py carry the fingerprint of their vocab.txt: another
    vocabulary is an error. Upstream's carry none: only the embedding-table size can be checked."""
    rows = model.text_model.embeddings.word_embeddings.weight.shape[0]
    if len(model.tokenizer) > rows:
        raise CheckpointLayoutError('%s: its text tower has %d token rows but the vocab.txt of --bert_path has '
                                    '%d tokens; use the vocabulary the model was trained with'
                                    % (path, rows, len(model.tokenizer)))
    expected = ckpt.get('vocab_fingerprint') if isinstance(ckpt, dict) else None
    if expected is None:
        print('note: %s has no vocabulary fingerprint (an upstream checkpoint): checked the embedding size '
              '(%d rows), not that vocab.txt is the training vocabulary' % (path, rows))
    elif expected != vocab_fingerprint(model.tokenizer):
        raise CheckpointLayoutError('%s: trained with another vocabulary than the vocab.txt of --bert_path '
                                    '(fingerprint mismatch); pass the --bert_path used for training' % path)


def load_align_state_dict(model, state_dict, source='checkpoint'):
    """Upstream loads with strict=False (align_model.py:25), silently ignoring any misnamed key.
    Here: transformers-4.8 `position_ids` and the MKG head keys are tolerated, a missing encoder
    key or a shape mismatch is an error, other extra keys are reported."""
    state_dict = dict(state_dict)
    state_dict.pop(POSITION_IDS_KEY, None)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and k not in MKG_KEYS]
    if missing:
        raise CheckpointLayoutError('%s: %d ALIGN keys missing, e.g. %s' % (source, len(missing), missing[:5]))
    for key, value in state_dict.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointLayoutError('%s: %s has shape %s, the model expects %s (wrong --bert_path '
                                        'config?)' % (source, key, tuple(value.shape), tuple(own[key].shape)))
    extra = [k for k in state_dict if k not in own and k not in MKG_KEYS]
    if extra:
        print('WARNING: %s: ignoring %d unknown keys, e.g. %s' % (source, len(extra), extra[:5]))
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return model


def load_align_checkpoint(model_path):
    """The checkpoint object as saved ({'epoch', 'min_loss', 'state_dict'[, 'vocab_fingerprint']})."""
    if not os.path.isfile(model_path):
        raise MissingFileError(
            '%s: ALIGN checkpoint not found. Download release v0.1 asset '
            'commodity_poi_mml_20211221_with_MKG_withMKG_iteration_200000_0.4215_0.407_0.018.pth from '
            'https://github.com/youyuge34/AVAS/releases and rename it align_model.pth (or pass '
            '--model_path).' % model_path)
    return load_checkpoint(model_path)


def read_align_checkpoint(model_path):
    return state_dict_from_checkpoint(load_align_checkpoint(model_path), model_path)


def build_model(model_path=None, bert_path='bert-base-chinese', bert_layers_num=4, feature_dim=512,
                with_mkg=False, efficientnet_type='efficientnet-b3', efficientnet_weights_path=None,
                init_bert_weights=False):
    """align_model.build_model: from a checkpoint when model_path is given (then no pretrained
    tower weights are read, as upstream forces), else freshly initialised."""
    if model_path:
        model = ALIGN(efficientnet_type, bert_layers_num, None, bert_path, False, feature_dim, with_mkg)
        ckpt = load_align_checkpoint(model_path)
        load_align_state_dict(model, state_dict_from_checkpoint(ckpt, model_path), model_path)
        check_vocabulary(model, ckpt, model_path)
        print('model.load_state_dict success~')
        return model
    return ALIGN(efficientnet_type, bert_layers_num, efficientnet_weights_path, bert_path,
                 init_bert_weights, feature_dim, with_mkg)


@torch.no_grad()
def encode_texts_reference(model, texts, device, norm=True):
    """Upstream's text path: one string per tokenizer/BERT call (no padding, mask all ones)."""
    texts = list(texts)
    if not texts:
        return torch.zeros((0, model.text_hidden_layer.out_features), device=device)
    return torch.cat([model.encode_text(tokenize(model.tokenizer, [t], device), norm=norm) for t in texts])


def encode_texts(model, texts, device, norm=True, batch_size=64):
    """batch_size 1 (--text_batch_size 1) = the reference path above; otherwise the padded,
    length-grouped batches of avas/text_batches.py (same embeddings to ~1e-6)."""
    if batch_size <= 1:
        return encode_texts_reference(model, texts, device, norm)
    return encode_texts_batched(model, texts, device, norm, batch_size)


@torch.no_grad()
def recalibrate_batchnorm(model, image_batches, device):
    """Re-estimate every BatchNorm's running statistics as the plain average over the given image
    batches ("precise BN"). EfficientNet's BN momentum is 0.01, so a short run leaves the eval-mode
    statistics at their init values and random-init towers then map every image to ~the same
    vector. Training-side helper of the port (train_align.py --recalibrate_bn); upstream has none."""
    bns = [m for m in model.image_model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    for images in image_batches:
        model.image_model(images.to(device))
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
