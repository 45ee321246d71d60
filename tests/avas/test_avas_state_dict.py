"""state_dict keys, order and shapes of ALIGN / ALIGN+MKG / Multimodal_Model vs spec §4, and the
efficientnet_pytorch static padding computed for 300 px (quirk 5)."""
import os

import pytest
import torch

from avas.align_model import ALIGN, MKG_KEYS, POSITION_IDS_KEY
from avas.model_local import Multimodal_Model
from tests.avas.avas_testlib import DATA

BERT = os.path.join(DATA, 'bert')


@pytest.fixture(scope='module')
def ranking_model():
    torch.manual_seed(0)
    return Multimodal_Model(ALIGN(bert_path=BERT), use_norm=1)


def test_align_keys_and_shapes(ranking_model):
    sd = ranking_model.align_model.state_dict()
    keys = list(sd)
    assert len(keys) + 1 == 651  # + transformers-4.8.1's persistent position_ids buffer
    assert POSITION_IDS_KEY not in sd
    assert keys[0] == 'logit_scale' and sd['logit_scale'].shape == () and sd['logit_scale'].item() == 1.0
    assert sum(k.startswith('image_model.') for k in keys) == 574
    assert sum(k.startswith('text_model.') for k in keys) + 1 == 72
    assert keys[-4:] == ['image_hidden_layer.weight', 'image_hidden_layer.bias', 'text_hidden_layer.weight',
                         'text_hidden_layer.bias']
    shapes = {
        'image_model._conv_stem.weight': (40, 3, 3, 3), 'image_model._conv_head.weight': (1536, 384, 1, 1),
        'image_model._fc.weight': (512, 1536), 'image_model._blocks.2._expand_conv.weight': (144, 24, 1, 1),
        'image_model._blocks.5._depthwise_conv.weight': (192, 1, 5, 5),
        'image_model._blocks.25._se_reduce.weight': (96, 2304, 1, 1),
        'image_model._blocks.25._project_conv.weight': (384, 2304, 1, 1),
        'text_model.embeddings.word_embeddings.weight': (21128, 768),
        'text_model.embeddings.position_embeddings.weight': (512, 768),
        'text_model.encoder.layer.3.intermediate.dense.weight': (3072, 768),
        'text_model.pooler.dense.weight': (768, 768),
        'image_hidden_layer.weight': (512, 512), 'text_hidden_layer.weight': (512, 768)}
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert 'image_model._blocks.0._expand_conv.weight' not in sd  # expand ratio 1
    assert 'text_model.encoder.layer.4.output.dense.weight' not in sd  # 4 layers, not config's 12
    assert sd['image_model._bn0.num_batches_tracked'].dtype == torch.int64
    bn = ranking_model.align_model.image_model._bn0
    assert bn.eps == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.01)
    n_params = sum(p.numel() for p in ranking_model.align_model.parameters())
    assert 57.0e6 < n_params < 58.6e6  # ~57.8 M with H = 768


def test_efficientnet_static_padding_for_300px(ranking_model):
    eff = ranking_model.align_model.image_model
    assert eff._conv_stem.static_padding.padding == (0, 1, 0, 1)
    expect = {0: (1, 1, 1, 1), 2: (0, 1, 0, 1), 3: (1, 1, 1, 1), 5: (2, 2, 2, 2), 8: (0, 1, 0, 1),
              13: (2, 2, 2, 2), 18: (2, 2, 2, 2), 24: (1, 1, 1, 1)}
    for block, pad in expect.items():
        assert eff._blocks[block]._depthwise_conv.static_padding.padding == pad, block


def test_mkg_head_keys(ranking_model):
    torch.manual_seed(0)
    model = ALIGN(bert_path=BERT, with_mkg=True)
    sd = model.state_dict()
    assert len(sd) + 1 == 654 and list(sd)[-3:] == list(MKG_KEYS)
    assert sd['relations_emb.weight'].shape == (4, 100) and sd['linear_relation.weight'].shape == (512, 100)
    rows = sd['relations_emb.weight'][:3].abs().sum(1)
    assert torch.allclose(rows, torch.ones(3), atol=1e-5)  # rows 0..2 divided by their L1 norm


def test_ranking_keys_order_and_shapes(ranking_model):
    sd = ranking_model.state_dict()
    keys = list(sd)
    assert len(keys) + 1 == 670
    assert keys[:8] == ['linear1.weight', 'linear1.bias', 'linear3.weight', 'linear3.bias', 'linear4.weight',
                        'linear4.bias', 'linear2.weight', 'linear2.bias']
    assert keys[8] == 'align_model.logit_scale' and keys[8 + 650] == 'attention_layer.local_att.fc1.fc.0.weight'
    tail = keys[-11:]
    assert tail == ['attention_layer.local_att.fc1.fc.0.weight', 'attention_layer.local_att.fc1.fc.0.bias',
                    'attention_layer.local_att.fc1.fc.1.bn.weight', 'attention_layer.local_att.fc1.fc.1.bn.bias',
                    'attention_layer.local_att.fc1.fc.1.bn.running_mean',
                    'attention_layer.local_att.fc1.fc.1.bn.running_var',
                    'attention_layer.local_att.fc1.fc.1.bn.num_batches_tracked',
                    'attention_layer.local_att.fc1.fc.3.weight', 'attention_layer.local_att.fc1.fc.3.bias',
                    'attention_layer.local_att.fc2.fc.0.weight', 'attention_layer.local_att.fc2.fc.0.bias']
    assert sd['linear1.weight'].shape == (512, 1024) and sd['linear3.weight'].shape == (512, 1536)
    assert sd['linear4.weight'].shape == (256, 512) and sd['linear2.weight'].shape == (1, 256)
    assert sd['attention_layer.local_att.fc1.fc.0.weight'].shape == (64, 2048)
    assert sd['attention_layer.local_att.fc1.fc.3.weight'].shape == (16, 64)
    assert sd['attention_layer.local_att.fc2.fc.0.weight'].shape == (1, 16)
    dice = ranking_model.attention_layer.local_att.fc1.fc[1]
    assert dice.bn.eps == 1e-9 and dice.bn.momentum == 0.1 and 'alpha' not in dice.state_dict()
    assert not any(p.requires_grad for p in ranking_model.align_model.parameters())  # --freeze 1
