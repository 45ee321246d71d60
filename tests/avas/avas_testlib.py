"""Shared helpers of the avas tests: a small BERT folder with the real vocab, deterministic
weights by key name (the same recipe was applied to upstream's own modules to make the saved
reference numbers in data/upstream_reference.json), and paths of the shipped real data."""
import json
import math
import os
import shutil
import zlib

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, 'avas', 'data')
PHOTOS = os.path.join(DATA, 'images_test')
TEST_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
RECALL_CSV = os.path.join(DATA, 'temp_recall_biztype0_fc5_imagern_500.csv')
VAL_CSV = os.path.join(DATA, 'dwd_mml_train_dataset_1007_urls_val_with_poi_tuomin.csv')
PIC_NUM = os.path.join(DATA, 'temp_dataset_item_pois_relation_1129_poi_2_pic_num.npy')
SMALL_BERT = {'hidden_size': 32, 'intermediate_size': 64, 'num_attention_heads': 2}


def make_small_bert(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(DATA, 'bert', 'config.json'), encoding='utf-8') as f:
        config = json.load(f)
    config.update(SMALL_BERT)
    with open(os.path.join(folder, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(config, f)
    shutil.copy(os.path.join(DATA, 'bert', 'vocab.txt'), folder)
    return folder


def deterministic_value(name, tensor, seed=0):
    """A value for state_dict entry `name` that depends only on the name, shape and seed."""
    if not tensor.is_floating_point():
        return tensor.clone()
    g = torch.Generator().manual_seed(seed + zlib.crc32(name.encode()))
    shape = tensor.shape
    if name.endswith('running_var'):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith('running_mean'):
        return 0.1 * torch.randn(shape, generator=g)
    if tensor.dim() <= 1:
        base = 1.0 if name.endswith('weight') else 0.0  # BN/LayerNorm scales near 1, biases near 0
        return base + 0.1 * torch.randn(shape, generator=g)
    fan_in = tensor[0].numel()
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def fill_deterministic(module, seed=0):
    state = module.state_dict()
    module.load_state_dict({k: deterministic_value(k, v, seed) for k, v in state.items()})
    return module


@torch.no_grad()
def set_bn_stats_from(image_model, images):
    """Make eval-mode BatchNorm statistics informative: random-init EfficientNets map every image to
    ~the same vector otherwise. Each BN gets the plain mean/var of its inputs over `images`."""
    bns = [m for m in image_model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    image_model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    image_model(images)
    for m in bns:
        m.eval()
        m.momentum = 0.01
    image_model.eval()
