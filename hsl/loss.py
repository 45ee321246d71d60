"""HSL's 'ContrastiveLoss': cross-entropy over a caption x image score matrix (upstream HSL/loss.py)."""
import torch
import torch.nn as nn


class ContrastiveLoss(nn.Module):
    """CE(S, arange(N)): text -> image only, no margin, no temperature (--margin is unused)."""

    def __init__(self):
        super().__init__()
        self.loss = nn.CrossEntropyLoss()

    def forward(self, sims):
        target = torch.arange(sims.size(0), device=sims.device)
        return self.loss(sims.float(), target)
