"""Evaluation encodes captions in blocks of 100 consecutive captions, each block padded to its own
longest caption: TextAttn has no padding mask (upstream quirk), so a caption's embedding depends on
its block and the blocks must be exactly upstream's."""
import os

import numpy as np
import torch

from lhsc import data, evaluation

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')


def test_text_blocks_of_100_consecutive_captions():
    model, opt, vocab, _ = evaluation.load_model(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), DATA, VOCAB)
    loader = data.get_test_loader('test', 'f30k_precomp', vocab, opt.batch_size, opt.workers, opt)
    assert loader.batch_size == 100 and len(loader.dataset) == 150
    img_embs, cap_embs, cap_lens = evaluation.encode_data(model, loader)
    assert img_embs.shape == (30, 36, 16) and cap_embs.shape[0] == 150

    dset = loader.dataset
    model.val_start()
    with torch.no_grad():
        for block in (range(0, 100), range(100, 150)):
            images, captions, lengths, ids = data.collate_fn([dset[i] for i in block])
            emb = model.txt_enc(captions, lengths).numpy()
            for j, idx in enumerate(ids):
                assert cap_lens[idx] == lengths[j]
                assert np.abs(cap_embs[idx, :lengths[j]] - emb[j, :lengths[j]]).max() <= 1e-6
                assert not cap_embs[idx, lengths[j]:].any()          # zero padding after the caption
            # image rows: image of caption 0, 5, 10, ... (upstream img_embs[0::5])
            for idx in ids:
                if idx % 5 == 0:
                    ref = model.img_enc(dset[idx][0][None]).numpy()[0]
                    assert np.abs(img_embs[idx // 5] - ref).max() <= 1e-6

        # the same caption encoded in another block (alone) gets a different embedding
        short = min(range(100, 150), key=lambda i: cap_lens[i])
        _, captions, lengths, _ = data.collate_fn([dset[short]])
        alone = model.txt_enc(captions, lengths).numpy()[0]
    assert lengths[0] < max(cap_lens[100:150])
    assert np.abs(alone - cap_embs[short, :lengths[0]]).max() > 1e-4
