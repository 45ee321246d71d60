"""TextAttn: LHSC's residual word self-attention block (upstream libs/text_atten.py).

    out = (tanh(L(x)) @ tanh(G(x))^T / L) @ tanh(V(x)) + x
Quirk kept (upstream libs/text_atten.py:40-54): there is no padding mask and the divisor is the
padded length, so a caption's embedding depends on the longest caption of its mini-batch.
"""
import numpy as np
import torch
from torch import nn


def _projection(dim, dropout_rate):
    return nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout_rate))


class TextAttn(nn.Module):

    def __init__(self, embed_dim, dropout_rate):
        super(TextAttn, self).__init__()
        self.embedding_local = _projection(embed_dim, dropout_rate)
        self.embedding_global = _projection(embed_dim, dropout_rate)
        self.embedding_v = _projection(embed_dim, dropout_rate)
        self.init_weights()

    def init_weights(self):
        for seq in self.children():
            for m in seq:
                if isinstance(m, nn.Linear):
                    r = np.sqrt(6.) / np.sqrt(m.in_features + m.out_features)
                    m.weight.data.uniform_(-r, r)
                    m.bias.data.fill_(0)

    def forward(self, local, raw_global):
        l_emb = self.embedding_local(local)
        g_emb = self.embedding_global(raw_global)
        v_emb = self.embedding_v(raw_global)
        common = torch.matmul(l_emb, g_emb.permute(0, 2, 1))
        common = common / common.size(-1)
        return torch.matmul(common, v_emb) + local
