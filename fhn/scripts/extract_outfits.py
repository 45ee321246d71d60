#!/usr/bin/env python
"""What the web recommender serves: `extract_outfits.py extract-features --cfg FILE` -> outfits .npz.

Port of the fork's scripts/extract_outfits.py. From the trained net (`load_trained`) and the
data set it writes one plain .npz (no pickle, no object arrays):

  outfit_names  str [N, K]     image names of each distinct positive outfit of `data_param`
  outfit_items  int64 [N, K]   their item ids (after the -1 second-top fill)
  outfit_codes  float64 [N, D] upstream's outfit feature: mean binary item code per branch,
                               (visual + text) / 2 when both branches are on
  codes_per_outfit  int        M = K x branches: outfit_codes * M are integers (packed ranking)
  user_codes    float32 [U, D] binary codes of the training users
  lambda_u, lambda_i  float32 [D]   the matching weights (hash_types 3)
  posi_feat, nega_feat  float32 [U, D]  cold start: each training user's mean positive /
                               negative outfit feature (upstream: big_outfits_{posi,nega}_feat)

The training users' outfits come from `net_param.big_data_param` when the config has it,
otherwise from `data_param` with phase train; `--features` reads them from a ColdStart cache
(`net_param.data_file + "_new"`, upstream's results/features.npz) instead.
Fixed: upstream summed `[]` placeholders (TypeError) when one branch is off; here the outfit
feature is then the mean code of the branch that is on. Upstream kept repeated outfits; here
each distinct outfit appears once (first occurrence order).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import copy  # noqa: E402
import logging  # noqa: E402

import numpy as np  # noqa: E402

from common.errors import InputError, cli_main  # noqa: E402
from common.safeio import check_writable, cleanup_stale_tmp, save_npz_atomic  # noqa: E402

LOGGER = logging.getLogger("fhn")
FORMAT_VERSION = 1


def distinct_outfits(tuples):
    """Distinct rows of `tuples` in order of first occurrence."""
    _, first = np.unique(tuples, axis=0, return_index=True)
    return tuples[np.sort(first)]


def outfit_codes(net, cache, tuples, cate_map):
    """Binary outfit features [N, D] float64: per branch the mean item code, then the branch mean."""
    per_branch = []
    for branch in net.branches():
        codes = [net.sign(cache.lookup(branch, c, tuples[:, k])).cpu().numpy().astype(np.int8)
                 for k, c in enumerate(cate_map)]
        per_branch.append(sum(c.astype(np.float64) for c in codes) / len(codes))
    return sum(per_branch) / len(per_branch)


def user_means(feats, uidx, num_users):
    """Mean outfit feature of each user (ColdStart.get_outfits' per-user average)."""
    sums = np.zeros((num_users, feats.shape[1]))
    np.add.at(sums, uidx, feats)
    counts = np.bincount(uidx, minlength=num_users)
    if (counts == 0).any():
        raise InputError("users %s have no outfits in the training tuples; the cold start needs "
                         "every user's positive and negative outfits" % np.flatnonzero(counts == 0)[:10].tolist())
    return (sums / counts[:, None]).astype(np.float32)


def extract(config, device, out, features=None):
    from fhn.codecache import CodeCache, slot_items
    from fhn.data import get_dataloader
    from fhn.evaluation import rank_outfits
    from fhn.model import get_net

    data_param = config.data_param
    if data_param is None:
        raise InputError("extract-features needs a data_param section (the outfits to serve)")
    data_param.shuffle = False
    loader = get_dataloader(data_param)
    net = get_net(config, device).eval()
    lambda_i, lambda_u, _ = net.get_matching_weight()
    if len(np.asarray(lambda_u)) == 0 or len(np.asarray(lambda_i)) == 0:
        raise InputError("net_param.hash_types must be 3: the recommender needs both lambda_u and "
                         "lambda_i (got hash_types %s)" % net.param.hash_types)
    cache = CodeCache(net, data_param, device, data_param.batch_size, data_param.num_workers,
                      getattr(config, "amp", False))
    items, tuples = slot_items(distinct_outfits(loader.dataset.posi), data_param.cate_map)
    cache.encode(items)
    codes = outfit_codes(net, cache, tuples, data_param.cate_map)
    names = np.array([loader.dataset.get_names(t) for t in tuples], dtype=str)
    user_codes = net.sign(net.user_latent()).detach().cpu().numpy().astype(np.float32)
    if features:
        from fhn.coldstart import load_cache

        data = load_cache(features)
        posi = np.stack([np.asarray(v, dtype=np.float32) for v in data["big_outfits_posi_feat"]])
        nega = np.stack([np.asarray(v, dtype=np.float32) for v in data["big_outfits_nega_feat"]])
    else:
        big_param = getattr(config.net_param, "big_data_param", None)
        if big_param is None:
            big_param = copy.deepcopy(data_param)
            big_param.phase = "train"  # the file names follow the phase
        big_param.shuffle = False
        big = get_dataloader(big_param)
        big.make_nega()
        means = []
        for uidx, tpl in rank_outfits(big.dataset):
            b_items, tpl = slot_items(tpl, big_param.cate_map)
            big_cache = cache if big_param.data_set == data_param.data_set else \
                CodeCache(net, big_param, device, big_param.batch_size, big_param.num_workers)
            big_cache.encode(b_items)
            means.append(user_means(outfit_codes(net, big_cache, tpl, big_param.cate_map),
                                    np.asarray(uidx), len(user_codes)))
        posi, nega = means
    if posi.shape != user_codes.shape or nega.shape != user_codes.shape:
        raise InputError("cold-start features %s / %s do not match the net's user codes %s"
                         % (posi.shape, nega.shape, user_codes.shape))
    save_npz_atomic(out, format_version=np.int64(FORMAT_VERSION), outfit_names=names,
                    outfit_items=np.asarray(tuples, dtype=np.int64), outfit_codes=codes,
                    codes_per_outfit=np.int64(len(data_param.cate_map) * len(net.branches())),
                    user_codes=user_codes,
                    lambda_u=np.asarray(lambda_u, dtype=np.float32).reshape(-1),
                    lambda_i=np.asarray(lambda_i, dtype=np.float32).reshape(-1),
                    posi_feat=posi, nega_feat=nega)
    print(len(tuples))  # upstream prints the number of outfits
    LOGGER.info("Saved %d outfits, %d users (D=%d) to %s", len(tuples), len(user_codes),
                codes.shape[1], out)
    return dict(num_outfits=len(tuples), num_users=len(user_codes), dim=int(codes.shape[1]))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", help="extract-features")
    parser.add_argument("--cfg", help="configuration file (data_param, net_param, load_trained)")
    parser.add_argument("--out", default="results/outfits.npz",
                        help="output .npz (upstream web read results/outfits.npz)")
    parser.add_argument("--features", default=None,
                        help="ColdStart cache with big_outfits_posi_feat/nega_feat (else computed)")
    # common.runtime.add_runtime_args's flags, spelled out: that module imports torch (slow --help)
    parser.add_argument("--device", default=None, help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--seed", default=None, type=int, help="seed python, numpy and torch")
    parser.add_argument("--deterministic", action="store_true",
                        help="use deterministic algorithms (slower; errors on ops without one)")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA (no-op on CPU)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.action != "extract-features":
        print("Action %s is not in extract-features" % args.action, file=sys.stderr)
        return 1
    from common.runtime import seed_everything
    from fhn.model import resolve_device
    from fhn.runconfig import config_log, load_config

    config = load_config(args.cfg)  # its UserError is an InputError: one line, exit 2
    if config.net_param is None or not config.load_trained:
        raise InputError("%s: needs net_param and load_trained (the trained net)" % args.cfg)
    if config.net_param.hash_types != 3:
        raise InputError("%s: net_param.hash_types must be 3: the recommender needs both lambda_u "
                         "and lambda_i (got %s)" % (args.cfg, config.net_param.hash_types))
    cleanup_stale_tmp(args.out)
    check_writable(args.out)
    config_log(stream_level=config.log_level, log_file=config.log_file)
    seed_everything(args.seed, args.deterministic)
    config.amp = args.amp or getattr(config, "amp", False)
    extract(config, resolve_device(config.gpus, args.device), args.out, args.features)
    return 0


if __name__ == "__main__":
    cli_main(main)
