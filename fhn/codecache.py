"""Fast outfit scoring: every distinct item is encoded once (CNN + encoder) and outfits are
scored from the stored relaxed codes with the net's own score function.

`CodeCache.score(uidx, tuples)` has the signature of the reference `fhn.scoring.PerOutfit.score`
(upstream's loop: the CNN re-runs for every item of every outfit); `fhn.scoring.make_scorer`
chooses one by `per_outfit`. Binary scores are identical, relaxed ones equal to float rounding
(tests/fhn/test_fhn_cached_eval.py).
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.runtime import autocast
from fhn.data import fill_second_top, get_img_trans, make_datum


class _ItemSet(Dataset):
    """Distinct items of one category: image tensors or sentence vectors."""

    def __init__(self, datum, cate, ids, branch):
        self.datum, self.cate, self.ids, self.branch = datum, cate, ids, branch

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        n = int(self.ids[i])
        if self.branch == "t":
            return self.datum.load_semantics(self.cate, n)
        img = self.datum.load_image(self.cate, n)
        return self.datum.transforms(img) if self.datum.transforms else img


def slot_items(tuples, cate_map):
    """({cate: distinct item ids}, tuples after the -1 second-top fill)."""
    tuples = np.stack([fill_second_top(t) for t in tuples]) if len(tuples) else tuples
    return {c: np.unique(tuples[:, [k for k, cc in enumerate(cate_map) if cc == c]])
            for c in sorted(set(cate_map))}, tuples


class CodeCache(object):
    """Relaxed item codes per branch/category; each distinct item encoded once."""

    def __init__(self, net, param, device, batch_size=64, num_workers=0, amp=False, datum=None):
        self.net, self.param, self.device = net, param, device
        self.batch_size, self.num_workers, self.amp = batch_size, num_workers, amp
        if datum is None:
            _, datum = make_datum(param, get_img_trans(param.phase, param.image_size))
        self.datum = datum
        self.codes = {}  # (branch, cate) -> ({item id: row}, tensor)

    def encode(self, items_per_cate, bar=None):
        for branch in self.net.branches():
            for cate, ids in items_per_cate.items():
                key = (branch, cate)
                known = self.codes.get(key, ({}, None))
                todo = [int(i) for i in ids if int(i) not in known[0]]
                if not todo:
                    continue
                loader = DataLoader(_ItemSet(self.datum, cate, todo, branch),
                                    batch_size=self.batch_size, num_workers=self.num_workers)
                out = []
                with torch.no_grad(), autocast(self.device, self.amp):
                    for batch in loader:
                        out.append(self.net.item_latent(cate, batch.to(self.device), branch).float())
                        if bar is not None:
                            bar.update(len(batch))
                index = dict(known[0])
                start = len(index)
                for j, i in enumerate(todo):
                    index[i] = start + j
                new = torch.cat(out)
                table = new if known[1] is None else torch.cat([known[1], new])
                self.codes[key] = (index, table)

    def lookup(self, branch, cate, ids):
        index, table = self.codes[(branch, cate)]
        return table[torch.as_tensor([index[int(i)] for i in ids], device=table.device)]

    def count_new(self, items_per_cate):
        """Items `encode` would still run through the encoders (for a progress total)."""
        return sum(sum(1 for i in ids if int(i) not in self.codes.get((b, c), ({}, None))[0])
                   for b in self.net.branches() for c, ids in items_per_cate.items())

    def score(self, uidx, tuples, chunk=4096, bar=None):
        """(relaxed, binary) scores [N] of outfits `tuples` [N, K] for users `uidx` [N]."""
        items, tuples = slot_items(tuples, self.param.cate_map)
        self.encode(items, bar)
        users_all = self.net.user_latent().detach().float()
        rel, binr = [], []
        for s in range(0, len(tuples), chunk):
            tp = tuples[s: s + chunk]
            users = users_all[torch.as_tensor(np.asarray(uidx[s: s + chunk]), device=users_all.device).long()]
            codes = {b: [self.lookup(b, c, tp[:, k]) for k, c in enumerate(self.param.cate_map)]
                     for b in self.net.branches()}
            with torch.no_grad():
                score, b_score = self.net.scores_from_codes(users, codes)
            rel.append(score.view(-1).cpu())
            binr.append(b_score.view(-1).cpu())
        if not rel:
            return np.zeros(0), np.zeros(0)
        return torch.cat(rel).numpy(), torch.cat(binr).numpy()
