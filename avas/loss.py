"""Ranking loss (AIS loss.py): RankNet BCE on sigmoid(s1 - s2)."""
import torch

_bce = torch.nn.BCELoss()


def rank_sigmoid_loss(score_1, score_2, gt_labels):
    """Mean over the batch of BCE(sigmoid(s1 - s2), label); BCELoss clamps log at -100."""
    return _bce(torch.sigmoid(score_1 - score_2), gt_labels)


def pair_softmax(score_1, score_2):
    """--softmax 1: softmax over the pair (dim 0 of stack([s1, s2]))."""
    s = torch.softmax(torch.stack([score_1, score_2], dim=0), dim=0)
    return s[0], s[1]
