"""AttFlat attention pooling (from MCAN, upstream mca.py); the only MCAN block HSL uses."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class FC(nn.Module):
    def __init__(self, in_size, out_size, dropout_r=0., use_relu=True):
        super().__init__()
        self.dropout_r = dropout_r
        self.use_relu = use_relu
        self.linear = nn.Linear(in_size, out_size)
        if use_relu:
            self.relu = nn.ReLU(inplace=True)
        if dropout_r > 0:  # no `dropout` submodule when 0 (no state_dict change either way)
            self.dropout = nn.Dropout(dropout_r)

    def forward(self, x):
        x = self.linear(x)
        if self.use_relu:
            x = self.relu(x)
        if self.dropout_r > 0:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    def __init__(self, in_size, mid_size, out_size, dropout_r=0., use_relu=True):
        super().__init__()
        self.fc = FC(in_size, mid_size, dropout_r=dropout_r, use_relu=use_relu)
        self.linear = nn.Linear(mid_size, out_size)

    def forward(self, x):
        return self.linear(self.fc(x))


class AttFlat(nn.Module):
    """Softmax attention over boxes -> one vector per item: (N, B, H) -> (N, FLAT_OUT_SIZE)."""

    def __init__(self, opt):
        super().__init__()
        self.glimpses = opt.FLAT_GLIMPSES
        self.flat_mlp_size = opt.FLAT_MLP_SIZE
        self.mlp = MLP(in_size=opt.HIDDEN_SIZE, mid_size=opt.FLAT_MLP_SIZE,
                       out_size=opt.FLAT_GLIMPSES, dropout_r=opt.DROPOUT_R, use_relu=True)
        self.linear_merge = nn.Linear(opt.HIDDEN_SIZE * opt.FLAT_GLIMPSES, opt.FLAT_OUT_SIZE)

    def forward(self, x, x_mask):
        att = self.mlp(x)
        att = att.masked_fill(x_mask.squeeze(1).squeeze(1).unsqueeze(2), -1e9)
        att = F.softmax(att, dim=1)
        att_list = [torch.sum(att[:, :, i: i + 1] * x, dim=1) for i in range(self.glimpses)]
        x_atted = self.linear_merge(torch.cat(att_list, dim=1))
        # upstream mca.py:228 divides by sqrt(FLAT_MLP_SIZE) (harmless before l2norm, kept)
        return x_atted / (self.flat_mlp_size ** 0.5)
