"""One training step of the port equals one step of the original code (Adam, clipping, BatchNorm
running stats incl. SAF's per-caption statistics) on the same batch, dropout switched off:
tests/lhsc/data/upstream/*_train_step.pt holds upstream's loss and post-step weights."""
import os

import pytest
import torch

from common.checkpoint import load_checkpoint
from lhsc import data, evaluation

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')


# Biases followed by a train-mode BatchNorm (or a softmax) have a gradient that is exactly zero in
# theory and ~1e-10 rounding noise in practice; Adam's first step turns that noise into +-lr, so
# these are compared only to be within one learning-rate step.
ZERO_GRADIENT = ('W.0.bias', 'v_global_w.embedding_local.0.bias', 'v_global_w.embedding_global.0.bias',
                 'embedding_common.0.bias', 'attn_sim_w.bias', 'graph_key_w.bias')


@pytest.mark.parametrize('name', ['lhsc', 'sgraf_saf', 'sgraf_sgr'])
def test_one_training_step_matches_upstream(name):
    expected = load_checkpoint(os.path.join(UPSTREAM, name + '_train_step.pt'))
    model, opt, vocab, _ = evaluation.load_model(os.path.join(UPSTREAM, name + '_legacy.pth.tar'), DATA, VOCAB)
    for enc in (model.img_enc, model.txt_enc, model.sim_enc):
        for m in enc.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    dset = data.PrecompDataset(os.path.join(DATA, 'f30k_precomp'), 'train', vocab)
    batch = data.collate_fn([dset[i] for i in range(10)])
    assert batch[3] == expected['ids']
    model.train_start()
    loss = model.train_emb(*batch)
    assert loss.item() == pytest.approx(expected['loss'], abs=1e-5)
    assert model.logger.meters[model.loss_name].val == pytest.approx(expected['loss'], abs=1e-5)
    worst = 0.0
    for ours, theirs in zip(model.state_dict(), expected['state']):
        assert list(ours) == list(theirs)
        for k in ours:
            if k.endswith('num_batches_tracked'):
                assert ours[k].item() == theirs[k].item(), k
            elif k.endswith(ZERO_GRADIENT):
                assert (ours[k] - theirs[k]).abs().max().item() <= 2.5 * opt.learning_rate, k
            else:
                worst = max(worst, (ours[k].float() - theirs[k].float()).abs().max().item())
    assert worst <= 1e-5  # one Adam step moves weights by ~lr = 2e-4
