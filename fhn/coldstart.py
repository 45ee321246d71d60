"""ColdStart (fork, fashionnet.py:522-711): codes for new users from similar users of a big data set.

user code = sign(beta * code_user + (1 - beta) * code_item), beta = epsilon = 0.5, where
code_user averages the big data set's user codes weighted by outfit similarity and code_item
is the user's own mean positive minus mean negative outfit code. Needs both branches.

The intermediate codes are cached: `net_param.data_file` is read if present (upstream's
pickle through the allow-list, or the .npz this port writes) and the complete set is written
to `data_file + "_new"` as a plain .npz (no pickle).
"""
import logging
import os

import numpy as np
import torch

from common.checkpoint import load_pickle
from common.errors import InputError
from common.progress import progress
from common.safeio import load_npz, save_npz_atomic
from fhn.data import get_dataloader
from fhn.model import FashionNetDeploy, to_device

LOGGER = logging.getLogger(__name__)

CACHE_KEYS = ("big_outfits_posi_feat", "big_outfits_nega_feat", "small_outfits_posi_feat",
              "small_outfits_nega_feat", "big_user_codes", "outfits_raw")


def _load_storage_bytes(b):
    """Replacement for torch.storage._load_from_bytes that refuses arbitrary objects."""
    import io  # only upstream caches pickled from CUDA tensors reach this

    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def load_cache(path):
    """The cold-start cache: this port's .npz, or upstream's pickle (numpy arrays, torch tensors)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"PK":
        return load_npz(path, what="ColdStart cache")
    return load_pickle(path, aliases={
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch.storage._load_from_bytes": _load_storage_bytes,
    })


def save_cache(path, data):
    """Every cached list as one float32 array [N, D] (rows = users or outfits)."""
    arrays = {key: np.stack([np.asarray(v, dtype=np.float32) for v in data[key]])
              for key in CACHE_KEYS}
    save_npz_atomic(path, **arrays)


def load_big_user_codes(path):
    """`user_codes` of the big model's extract-features file (a pickle, or an .npz with that key)."""
    LOGGER.info("Loading big user_binary_code from %s", path)
    if not os.path.isfile(path):
        raise InputError("%s: net_param.big_feature_file not found; run extract-features with the "
                         "big (630) model first" % path)
    data = load_cache(path)
    if not isinstance(data, dict) or "user_codes" not in data:
        raise InputError("%s: has no user_codes; expected the output of extract-features" % path)
    return data["user_codes"]


def user_user_embedding(big_outfits, small_outfits, big_user_codes, lambda_i):
    """uu_i = mean_j [sum_d small_i,d lambda_d big_j,d / D] * code_j."""
    big = torch.stack([torch.as_tensor(np.asarray(b), dtype=torch.float32) for b in big_outfits])
    small = torch.stack([torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in small_outfits])
    codes = torch.as_tensor(np.asarray(big_user_codes), dtype=torch.float32)
    lam = torch.as_tensor(np.asarray(lambda_i), dtype=torch.float32).view(1, -1)
    sim = (small * lam) @ big.t() / big.shape[1]
    return sim @ codes / big.shape[0]


class ColdStart(FashionNetDeploy):
    """FashionNetDeploy whose user codes come from `prepare_codes()` instead of the user encoder.

    `fhn.model.get_net` calls prepare_codes before the checkpoint is loaded, i.e. with the
    un-loaded net as upstream computes them in __init__ (quirk 19), unless
    `net_param.data_file` holds them already.
    """

    beta = 0.5
    epsilon = 0.5

    def __init__(self, param, pretrained=None):
        super().__init__(param, pretrained)
        self.user_codes = None

    def get_outfits(self, loader, device):
        """Per-user mean of per-outfit codes ((mean visual + mean text) / 2); outfit list."""
        num_users = loader.num_users
        sums = [torch.zeros(self.param.dim) for _ in range(num_users)]
        counts = [0] * num_users
        raw = []
        desc = "cold-start codes (%s, %s)" % (loader.dataset.param.data_set, loader.dataset.param.data_mode)
        for items, uidx in progress(loader, desc=desc, total=loader.num_batch):
            items = to_device(items, device)
            with torch.no_grad():
                feat_v, feat_t = self.compute_codes(items)
            feat_v = [f.cpu().numpy().astype(np.int8) for f in feat_v]
            feat_t = [f.cpu().numpy().astype(np.int8) for f in feat_t]
            for n, u in enumerate(uidx.tolist()):
                outfit_v = sum(v[n] for v in feat_v) / len(feat_v)
                outfit_t = sum(t[n] for t in feat_t) / len(feat_t)
                outfit = (outfit_v + outfit_t) / 2
                sums[u] += torch.from_numpy(outfit).float()
                counts[u] += 1
                raw.append(outfit)
        if 0 in counts:
            raise InputError("%s: user %d has no outfits in this split; ColdStart needs outfits of "
                             "every user" % (loader.dataset.param.posi_fn, counts.index(0)))
        return [s / c for s, c in zip(sums, counts)], raw

    def _read_cache(self):
        path = self.param.data_file
        if not path or not os.path.isfile(path):
            return {}
        try:
            data = dict(load_cache(path))
            LOGGER.info("loading data from %s", path)
            return data
        except Exception as e:  # noqa: BLE001  upstream: log and recompute
            LOGGER.info("loading data failed: %s", e)
            return {}

    def prepare_codes(self, device="cpu"):
        """Cold-start user codes; the loaders work on copies of the data params (set_data_mode)."""
        data = self._read_cache()
        if data.get("big_user_codes") is None:  # first: a missing file fails before the long passes
            data["big_user_codes"] = load_big_user_codes(self.param.big_feature_file)
        big = small = None
        if data.get("big_outfits_posi_feat") is None or data.get("outfits_raw") is None:
            big = big or get_dataloader(self.param.big_data_param.replace())
            big.set_data_mode("PosiOnly")
            data["big_outfits_posi_feat"], data["outfits_raw"] = self.get_outfits(big, device)
        if data.get("big_outfits_nega_feat") is None:
            big = big or get_dataloader(self.param.big_data_param.replace())
            big.set_data_mode("NegaOnly")
            data["big_outfits_nega_feat"] = self.get_outfits(big, device)[0]
        for mode, key in (("PosiOnly", "small_outfits_posi_feat"),
                          ("NegaOnly", "small_outfits_nega_feat")):
            if data.get(key) is None:
                small = small or get_dataloader(self.param.small_data_param.replace())
                small.set_data_mode(mode)
                data[key] = self.get_outfits(small, device)[0]
        if self.param.data_file:
            save_cache("%s_new" % self.param.data_file, data)
        self.user_codes = self.cold_start_codes(data)
        return self.user_codes

    @staticmethod
    def user_user_embedding(big_outfits, small_outfits, big_user_codes, lambda_i):
        return user_user_embedding(big_outfits, small_outfits, big_user_codes, lambda_i)

    def cold_start_codes(self, data):
        lambda_i, lambda_u, _ = self.get_matching_weight()
        big_codes = data["big_user_codes"]
        posi = user_user_embedding(data["big_outfits_posi_feat"], data["small_outfits_posi_feat"],
                                   big_codes, lambda_i)
        nega1 = user_user_embedding(data["big_outfits_posi_feat"], data["small_outfits_nega_feat"],
                                    big_codes, lambda_i)
        nega2 = user_user_embedding(data["big_outfits_nega_feat"], data["small_outfits_nega_feat"],
                                    big_codes, lambda_i)
        eps = self.epsilon
        code_user = (posi - eps * (nega1 + nega2)) / (1 + 2 * eps)
        lam_u = torch.as_tensor(np.asarray(lambda_u), dtype=torch.float32).view(1, -1)
        small_p = torch.stack([torch.as_tensor(np.asarray(s), dtype=torch.float32)
                               for s in data["small_outfits_posi_feat"]])
        small_n = torch.stack([torch.as_tensor(np.asarray(s), dtype=torch.float32)
                               for s in data["small_outfits_nega_feat"]])
        code_item = (small_p * lam_u - small_n * lam_u) / 2
        return self.sign(self.beta * code_user + (1 - self.beta) * code_item)

    def user_codes_for(self, uidx):
        if self.user_codes is None:
            raise RuntimeError("ColdStart codes not prepared (call prepare_codes)")
        return self.user_codes.to(uidx.device)[uidx.view(-1).long()]

    def user_latent(self, uidx=None):
        device = self.user_embedding.scale.device
        if uidx is None:
            uidx = torch.arange(self.user_codes.shape[0], device=device)
        return self.user_codes_for(uidx.to(device))
