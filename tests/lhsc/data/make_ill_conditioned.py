"""Writes ill_conditioned.npz: similarity-head inputs where the attended context of a word nearly cancels.

    python tests/lhsc/data/make_ill_conditioned.py      (from the repo root; deterministic, CPU, seconds)

Random unit regions (E=32) and caption words; for a few (image, caption, word) targets the image's
regions are moved (float64 L-BFGS) until the word's SCAN context sum_r attn_r v_r equals a vector
of a chosen small norm (1e-3, 1.5e-5, 0), so float32 rounding anywhere before l2norm(context) is
amplified by 1/|c|. Also stores one random similarity head (E=32, S=16) per head type with random
BatchNorm statistics, as arrays `<head>/<state_dict key>`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

import numpy as np
import torch
import torch.nn.functional as F

from common.safeio import save_npz_atomic
from lhsc.model import EncoderSimilarity

EMBED, SIM = 32, 16
LENS = [9, 4, 6, 1, 7, 3]
TARGETS = [(0, 2, 1, 1.5e-5), (1, 4, 0, 1e-3), (2, 0, 3, 0.0), (3, 5, 2, 3e-4)]  # image, caption, word, |c|


def contexts(img, cap):
    """float64 SCAN contexts (L, E) of one image (36, E) and one caption (L, E)."""
    attn = F.leaky_relu(img @ cap.t(), 0.1)
    attn = attn / (attn.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
    return torch.softmax(attn.t() * 9.0, dim=1) @ img


def main():
    g = torch.Generator().manual_seed(11)
    img = F.normalize(torch.randn(4, 36, EMBED, generator=g, dtype=torch.float64), dim=-1)
    cap = torch.zeros(len(LENS), max(LENS), EMBED, dtype=torch.float64)
    for j, n in enumerate(LENS):
        cap[j, :n] = F.normalize(torch.randn(n, EMBED, generator=g, dtype=torch.float64), dim=-1)
    for i, j, w, norm in TARGETS:
        goal = norm * F.normalize(torch.randn(EMBED, generator=g, dtype=torch.float64), dim=0)
        p = img[i].clone().requires_grad_()
        opt = torch.optim.LBFGS([p], max_iter=2000, tolerance_grad=1e-40, tolerance_change=1e-40,
                                line_search_fn='strong_wolfe')

        def closure():
            opt.zero_grad()
            loss = (contexts(F.normalize(p, dim=-1), cap[j, :LENS[j]])[w] - goal).pow(2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        img[i] = F.normalize(p.detach(), dim=-1)
        exact = contexts(img[i].float().double(), cap[j, :LENS[j]].float().double())[w].norm().item()
        print('image %d caption %d word %d: |c| = %.2e (float32 inputs)' % (i, j, w, exact))
    arrays = {'img': img.float().numpy(), 'cap': cap.float().numpy(), 'lens': np.array(LENS)}
    for k, head in enumerate(('LHSC', 'SAF', 'SGR')):
        torch.manual_seed(20 + k)
        enc = EncoderSimilarity(EMBED, SIM, head=head)
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.weight.numel()
                m.weight.data = torch.rand(n) + .5
                m.bias.data = torch.rand(n) - .5
                m.running_mean.copy_(torch.rand(n) - .5)
                m.running_var.copy_(torch.rand(n) + .5)
        for key, value in enc.state_dict().items():
            arrays['%s/%s' % (head, key)] = value.numpy()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ill_conditioned.npz')
    save_npz_atomic(out, **arrays)
    print('wrote', out)


if __name__ == '__main__':
    main()
