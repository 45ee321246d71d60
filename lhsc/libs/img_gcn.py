"""IM_GCN: LHSC's region "graph convolution" block (upstream libs/img_gcn.py).

It learns a dense 36x36 region affinity from the features themselves (no adjacency input):
    R = fc1(cat(theta_k(v))) @ fc2(cat(phi_k(v)))^T / n_regions,   out = BN(W0(R @ g(v))) + v
The BatchNorm's weight and bias start at 0, so every block is the identity at initialisation.
"""
import torch
from torch import nn


class IM_GCN(nn.Module):

    def __init__(self, in_channels, inter_channels, bn_layer=True):
        super(IM_GCN, self).__init__()
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        if self.inter_channels is None:
            self.inter_channels = max(in_channels // 2, 1)
        if self.inter_channels % 4:
            raise ValueError('IM_GCN needs embed_size divisible by 4 (four theta/phi heads), got %d'
                             % self.inter_channels)
        # upstream libs/img_gcn.py:43-58 divides with py2 `/ 4` (integer division there)
        quarter = self.inter_channels // 4

        def conv(c_in, c_out):
            return nn.Conv1d(c_in, c_out, kernel_size=1, stride=1, padding=0)

        self.g = conv(self.in_channels, self.inter_channels)
        if bn_layer:
            self.W = nn.Sequential(conv(self.inter_channels, self.in_channels),
                                   nn.BatchNorm1d(self.in_channels))
            nn.init.constant_(self.W[1].weight, 0)
            nn.init.constant_(self.W[1].bias, 0)
        else:
            self.W = conv(self.inter_channels, self.in_channels)
            nn.init.constant_(self.W.weight, 0)
            nn.init.constant_(self.W.bias, 0)

        # registration order fixes the state_dict key order: theta..theta3, then phi..phi3
        self.theta = conv(self.in_channels, quarter)
        self.theta1 = conv(self.in_channels, quarter)
        self.theta2 = conv(self.in_channels, quarter)
        self.theta3 = conv(self.in_channels, quarter)
        self.phi = conv(self.in_channels, quarter)
        self.phi1 = conv(self.in_channels, quarter)
        self.phi2 = conv(self.in_channels, quarter)
        self.phi3 = conv(self.in_channels, quarter)
        self.fc1 = nn.Linear(self.in_channels, self.inter_channels)
        self.fc2 = nn.Linear(self.in_channels, self.inter_channels)
        # upstream defines an Xavier init_weights() for fc1/fc2 but never calls it (quirk 14): kept.

    def forward(self, v):
        """v: (B, C, N regions) -> (B, C, N), upstream's op order (one Conv1d per head)."""
        batch, quarter = v.size(0), self.inter_channels // 4
        g_v = self.g(v).view(batch, self.inter_channels, -1).permute(0, 2, 1)             # (B, N, C)
        a = torch.cat([c(v).view(batch, quarter, -1) for c in (self.theta, self.theta1, self.theta2, self.theta3)], 1)
        a = self.fc1(a.permute(0, 2, 1))                                                    # (B, N, C)
        b = torch.cat([c(v).view(batch, quarter, -1) for c in (self.phi, self.phi1, self.phi2, self.phi3)], 1)
        b = self.fc2(b.permute(0, 2, 1)).permute(0, 2, 1)                                   # (B, C, N)
        relation = torch.matmul(a, b)
        relation = relation / relation.size(-1)                                             # divide by N, no softmax
        y = torch.matmul(relation, g_v).permute(0, 2, 1).contiguous()                       # (B, C, N)
        return self.W(y.view(batch, self.inter_channels, *v.size()[2:])) + v
