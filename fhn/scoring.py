"""Outfit scores for every evaluation action: one entry point, `make_scorer(..., per_outfit)`.

- `PerOutfit` (reference, upstream's loop in scripts/run.py): outfits are loaded batch by batch
  and the whole net (CNN + encoders + score) runs for every item of every outfit.
- `fhn.codecache.CodeCache` (fast, default): every distinct item is encoded once and outfits
  are scored from the cached codes with the same score function.

Both have `score(uidx, tuples, bar=None) -> (relaxed [N], binary [N])` and `total(tuples)`
(units of work for a progress bar); tests/fhn/test_fhn_cached_eval.py pins them together.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.runtime import autocast
from fhn.codecache import CodeCache, slot_items
from fhn.data import get_img_trans, make_datum
from fhn.model import outfit_scores, to_device


class _OutfitSet(Dataset):
    """(items of outfit i, its user) -- what the PosiOnly / NegaOnly loaders yield."""

    def __init__(self, datum, uidx, tuples):
        self.datum, self.uidx, self.tuples = datum, np.asarray(uidx), tuples

    def __len__(self):
        return len(self.tuples)

    def __getitem__(self, i):
        return self.datum.get(self.tuples[i]), self.uidx[i]


class PerOutfit(object):
    """Reference scorer: the net re-encodes every item of every outfit."""

    def __init__(self, net, param, device, batch_size=64, num_workers=0, amp=False, datum=None):
        self.net, self.device, self.amp = net, device, amp
        self.batch_size, self.num_workers = batch_size, num_workers
        if datum is None:
            _, datum = make_datum(param, get_img_trans(param.phase, param.image_size))
        self.datum = datum

    def total(self, tuples):
        return len(tuples)

    def score(self, uidx, tuples, bar=None):
        """(relaxed, binary) scores [N] of outfits `tuples` [N, K] for users `uidx` [N]."""
        loader = DataLoader(_OutfitSet(self.datum, uidx, tuples), batch_size=self.batch_size,
                            num_workers=self.num_workers)
        rel, binr = [], []
        for items, users in loader:
            with torch.no_grad(), autocast(self.device, self.amp):
                score, b_score = outfit_scores(self.net, to_device(items, self.device),
                                               users.to(self.device))
            rel.append(score.float().view(-1).cpu())
            binr.append(b_score.float().view(-1).cpu())
            if bar is not None:
                bar.update(len(users))
        if not rel:
            return np.zeros(0), np.zeros(0)
        return torch.cat(rel).numpy(), torch.cat(binr).numpy()


class _CachedScorer(CodeCache):
    """CodeCache with the progress total of the scorer interface (items still to encode)."""

    def total(self, tuples):
        items, _ = slot_items(tuples, self.param.cate_map)
        return self.count_new(items)


def make_scorer(net, param, device, per_outfit=False, batch_size=None, num_workers=None, amp=False):
    """The reference (`per_outfit=True`) or the cached scorer for outfits of data set `param`."""
    cls = PerOutfit if per_outfit else _CachedScorer
    return cls(net, param, device, batch_size or param.batch_size,
               param.num_workers if num_workers is None else num_workers, amp)


class CNNCounter(object):
    """Counts images through net.features (forward hook): the work each scorer does."""

    def __init__(self, net):
        self.count = 0
        self.handle = None
        if hasattr(net, "features"):
            self.handle = net.features.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.count += inputs[0].shape[0]

    def close(self):
        if self.handle is not None:
            self.handle.remove()
