"""Evaluation actions of scripts/run.py: pair accuracy, rank (AUC/NDCG), FITB, codes, recommend.

Every action scores outfits through `fhn.scoring.make_scorer`: cached item codes by default,
upstream's per-outfit loop with `per_outfit=True` (same scores, tests/fhn/test_fhn_cached_eval.py).
"""
import logging
import os
import pickle
import shutil

import numpy as np

from common.atomic import atomic_open
from common.errors import InputError
from common.progress import progress
from common.safeio import save_npz_atomic
from fhn import metrics
from fhn.codecache import CodeCache, slot_items
from fhn.data import get_dataloader
from fhn.model import get_net
from fhn.grid import draw_outfit_grid
from fhn.results_file import update_npz
from fhn.scoring import make_scorer

LOGGER = logging.getLogger("fhn")


def eval_param(param):
    """A copy of a data param for evaluation (unshuffled); the caller's config stays as it was."""
    return param.replace(shuffle=False)


def load_net(config, device, data_param):
    """get_net + the item-list check against the checkpoint's training image lists."""
    return get_net(config, device, data_param).eval()


def score_with_bar(scorer, uidx, tuples, desc, show_progress=True):
    """scorer.score(uidx, tuples) under a tqdm bar (outfits or items to encode)."""
    with progress(total=scorer.total(tuples), desc=desc, enabled=show_progress) as bar:
        rel, binr = scorer.score(uidx, tuples, bar=bar)
    if not (np.isfinite(rel).all() and np.isfinite(binr).all()):
        raise InputError("%s: non-finite outfit scores; the checkpoint holds NaN/inf weights "
                         "(a diverged run?)" % desc)
    return rel, binr


# ----- evaluate-rank ----------------------------------------------------------------
def _per_user(num_users, uidx, values):
    lists = [[] for _ in range(num_users)]
    for u, v in zip(uidx, values):
        lists[int(u)].append(float(v))
    return lists


def rank_outfits(dataset):
    """(uidx, tuples) of positives then negatives in file order (evaluate-rank order)."""
    posi_u = dataset.uidxs
    nega_u = dataset.uidxs[np.arange(len(dataset.nega)) // dataset.ratio]
    return (posi_u, dataset.posi), (nega_u, dataset.nega)


def rank_scores(config, net, device, per_outfit=False, show_progress=True):
    """Per-user relaxed / binary score lists of positives and negatives, and the loader."""
    data_param = eval_param(config.data_param)
    loader = get_dataloader(data_param)
    loader.make_nega()
    num_users = net.param.num_users
    scorer = make_scorer(net, data_param, device, per_outfit, amp=getattr(config, "amp", False))
    out = []
    for name, (uidx, tuples) in zip(("positives", "negatives"), rank_outfits(loader.dataset)):
        rel, binr = score_with_bar(scorer, uidx, tuples, "evaluate-rank " + name, show_progress)
        out.append((_per_user(num_users, uidx, rel), _per_user(num_users, uidx, binr)))
    return out, loader


def rank_metrics(posi_score, posi_binary, nega_score, nega_binary):
    missing = [u for u, (p, n) in enumerate(zip(posi_score, nega_score)) if not p or not n]
    if missing:
        raise InputError("evaluate-rank: user(s) %s have no positive or no negative outfits (%d of %d "
                         "users); AUC/NDCG need both for every user of the net: check the tuples "
                         "files and net_param.num_users" % (missing[:10], len(missing), len(posi_score)))
    mean_ndcg, avg_ndcg = metrics.NDCG(posi_score, nega_score)
    mean_ndcg_binary, avg_ndcg_binary = metrics.NDCG(posi_binary, nega_binary)
    aucs, mean_auc = metrics.ROC(posi_score, nega_score)
    aucs_binary, mean_auc_binary = metrics.ROC(posi_binary, nega_binary)
    return dict(
        posi_score_binary=posi_binary, posi_score=posi_score,
        nega_score_binary=nega_binary, nega_score=nega_score,
        mean_ndcg=mean_ndcg, avg_ndcg=avg_ndcg,
        mean_ndcg_binary=mean_ndcg_binary, avg_ndcg_binary=avg_ndcg_binary,
        aucs=aucs, mean_auc=mean_auc, aucs_binary=aucs_binary, mean_auc_binary=mean_auc_binary,
    )


def evaluate_rank(config, device, per_outfit=False, show_progress=True):
    LOGGER.info("Testing for NDCG and AUC.")
    net = load_net(config, device, config.data_param)
    ((posi_score, posi_binary), (nega_score, nega_binary)), loader = rank_scores(
        config, net, device, per_outfit, show_progress)
    results = rank_metrics(posi_score, posi_binary, nega_score, nega_binary)
    LOGGER.info(
        "Metric:\n- average ndcg:%.4f\n- average ndcg(binary):%.4f\n- mean auc:%.4f\n"
        "- mean auc(binary):%.4f",
        results["mean_ndcg"].mean(), results["mean_ndcg_binary"].mean(),
        results["mean_auc"], results["mean_auc_binary"],
    )
    update_npz(config.result_file, results)
    if config.result_dir is not None:
        save_ranked_outfits(config.result_dir, loader, results, show_progress)
    printed = dict(average_ndcg=float(results["mean_ndcg"].mean()),
                   average_ndcg_binary=float(results["mean_ndcg_binary"].mean()))
    return dict(results, **printed)


def save_ranked_outfits(result_dir, loader, results, show_progress=True):
    """result_dir: ndcg.txt, label/user-%03d.txt, outfit/user-%03d/top-%03d-%d/%02d.jpg."""
    if loader.dataset.param.variable_length:
        raise InputError("result_dir: saving ranked outfits needs fixed-length outfits; remove "
                         "result_dir for %s" % loader.dataset.param.data_set)
    posi_score, nega_score = results["posi_score"], results["nega_score"]
    labels = [np.array([1] * len(p) + [0] * len(n)) for p, n in zip(posi_score, nega_score)]
    outfits = loader.dataset.get_outfits_list()
    sorting = [np.argsort(-1.0 * np.array(p + n))
               for p, n in zip(results["posi_score_binary"], results["nega_score_binary"])]
    os.makedirs(os.path.join(result_dir, "label"), exist_ok=True)
    os.makedirs(os.path.join(result_dir, "outfit"), exist_ok=True)
    with atomic_open(os.path.join(result_dir, "ndcg.txt"), "w") as f:
        np.savetxt(f, results["mean_ndcg_binary"])
    for uid, ranked_idx in enumerate(progress(sorting, desc="result_dir", enabled=show_progress)):
        if uid >= len(outfits):
            break
        folder = os.path.join(result_dir, "outfit", "user-%03d" % uid)
        with atomic_open(os.path.join(result_dir, "label", "user-%03d.txt" % uid), "w") as f:
            np.savetxt(f, labels[uid][ranked_idx], fmt="%d")
        for n, idx in enumerate(ranked_idx):
            image_folder = os.path.join(folder, "top-%03d-%d" % (n, labels[uid][idx]))
            os.makedirs(image_folder, exist_ok=True)
            for cate, item_id in enumerate(outfits[uid][idx]):
                shutil.copy2(loader.dataset.get_image_path(cate, item_id),
                             os.path.join(image_folder, "%02d.jpg" % cate))
    LOGGER.info("All outfits are save in %s", result_dir)


# ----- evaluate-accuracy ---------------------------------------------------------------
def evaluate_accuracy(config, device, per_outfit=False, show_progress=True):
    param = eval_param(config.data_param)
    loader = get_dataloader(param)
    net = load_net(config, device, param)
    LOGGER.info("Testing for accuracy")
    loader.set_data_mode("PairWise")
    loader.make_nega()
    ds = loader.dataset
    scorer = make_scorer(net, param, device, per_outfit, amp=config.amp)
    (posi_u, posi), (nega_u, nega) = rank_outfits(ds)
    p, bp = score_with_bar(scorer, posi_u, posi, "evaluate-accuracy positives", show_progress)
    n, bn = score_with_bar(scorer, nega_u, nega, "evaluate-accuracy negatives", show_progress)
    pair = np.arange(len(nega)) // ds.ratio
    acc_vec = (p[pair] - n) > 0
    bin_vec = (bp[pair] - bn) > 0
    accuracy = binary = 0.0
    bs = param.batch_size
    for idx, s in enumerate(range(0, len(nega), bs)):
        a, b = acc_vec[s: s + bs], bin_vec[s: s + bs]
        LOGGER.info("Batch [%d]/[%d] Accuracy %.3f Accuracy (Binary Codes) %.3f", idx,
                    loader.num_batch, a.mean(), b.mean())
        # upstream accumulates batch accuracy x batch size
        accuracy += a.sum() / a.size * a.size
        binary += b.sum() / b.size * b.size
    accuracy /= loader.num_sample
    binary /= loader.num_sample
    accuracy, binary = float(accuracy), float(binary)
    LOGGER.info("Average accuracy: %.3f, Binary Accuracy: %.3f", accuracy, binary)
    if net.param.zero_iterm:
        results = dict(uaccuracy=accuracy, ubinary=binary)
    elif net.param.zero_uterm:
        results = dict(iaccuracy=accuracy, ibinary=binary)
    else:
        results = dict(accuracy=accuracy, binary=binary)
    update_npz(config.result_file, results)
    return results


# ----- fitb --------------------------------------------------------------------------
def fitb(config, device, per_outfit=False, show_progress=True):
    data_param = config.fitb_data_param
    LOGGER.info("Get data for FITB questions: %s", data_param)
    loader = get_dataloader(data_param)
    net = load_net(config, device, data_param)
    ds = loader.dataset
    if len(ds.fitb) == 0:
        raise InputError("%s: no FITB questions" % data_param.fitb_fn)
    rows = [ds.question(n) for n in range(len(ds.fitb))]
    uidx = np.concatenate([r[0] for r in rows])
    tuples = np.concatenate([r[1] for r in rows])
    scorer = make_scorer(net, data_param, device, per_outfit, batch_size=64 if not per_outfit
                         else data_param.num_cand, amp=config.amp)
    _, b = score_with_bar(scorer, uidx, tuples, "fitb", show_progress)
    b = b.reshape(len(rows), data_param.num_cand)
    # the first candidate is the ground truth; argmax takes the first maximum (a tie counts)
    correct = int((np.argmax(b, axis=1) == 0).sum())
    fitb_acc = correct / len(rows)
    LOGGER.info("FITB Accuracy %.4f", fitb_acc)
    update_npz(config.result_file, dict(fitb_acc=fitb_acc))
    return dict(fitb_acc=fitb_acc)


# ----- extract-features / recommend ---------------------------------------------------
def extract_features(config, device, show_progress=True):
    """feature_file pickle: user_codes, item_codes {name: [visual int8 or [], text int8 or []]}, lambdas.

    Upstream's format (a pickle despite the .npz name) because ColdStart and upstream's web demo
    read it; it holds only dicts, lists and numpy arrays (read back through the allow-list).
    """
    LOGGER.info("Extract features.")
    data_param = eval_param(config.data_param)
    loader = get_dataloader(data_param)
    net = load_net(config, device, data_param)
    user_codes = net.sign(net.user_latent()).cpu().numpy()
    lambda_i, lambda_u, alpha = net.get_matching_weight()
    cache = CodeCache(net, data_param, device, data_param.batch_size, data_param.num_workers, config.amp)
    items, _ = slot_items(loader.dataset.posi, data_param.cate_map)
    with progress(total=cache.count_new(items), desc="extract-features", enabled=show_progress) as bar:
        cache.encode(items, bar)
    item_codes = dict()
    for cate, ids in items.items():
        codes = {b: net.sign(cache.lookup(b, cate, ids)).cpu().numpy().astype(np.int8)
                 for b in net.branches()}
        for j, i in enumerate(ids):
            name = loader.dataset.image_list[cate][int(i)]
            # quirk 1 fixed: upstream indexes [] placeholders unless both branches are on
            item_codes[name] = [codes["v"][j] if "v" in codes else [],
                                codes["t"][j] if "t" in codes else []]
    data = dict(user_codes=user_codes, item_codes=item_codes, lambda_u=lambda_u,
                lambda_i=lambda_i, alpha=alpha)
    folder = os.path.dirname(config.feature_file or "")
    if folder:
        os.makedirs(folder, exist_ok=True)
    with atomic_open(config.feature_file, "wb") as f:
        pickle.dump(data, f)
    LOGGER.info("Saved codes of %d users and %d items to %s", len(user_codes), len(item_codes),
                config.feature_file)
    return dict(num_users=len(user_codes), num_items=len(item_codes))


def recommend(config, device, user, topk=10, export=None, candidates="user", show_progress=True,
              grid=None):
    """Top-k outfits for `user` by binary score from stored codes (= evaluate-rank's values)."""
    data_param = eval_param(config.data_param)
    loader = get_dataloader(data_param)
    loader.make_nega()
    net = load_net(config, device, data_param)
    num_users = net.user_latent().shape[0]
    if not 0 <= user < num_users:
        raise InputError("--user %d out of range: the net has %d users (0..%d)"
                         % (user, num_users, num_users - 1))
    (posi_u, posi), (nega_u, nega) = rank_outfits(loader.dataset)
    tuples = np.concatenate([posi, nega])
    labels = np.concatenate([np.ones(len(posi), int), np.zeros(len(nega), int)])
    owner = np.concatenate([posi_u, nega_u])
    if candidates == "user":
        keep = owner == user
        tuples, labels = tuples[keep], labels[keep]
    else:  # every distinct outfit of the split
        _, first = np.unique(tuples, axis=0, return_index=True)
        first = np.sort(first)
        tuples, labels = tuples[first], labels[first] * (owner[first] == user)
    if len(tuples) == 0:
        raise InputError("%s: user %d has no outfits in this split; use --candidates all"
                         % (data_param.posi_fn, user))
    cache = make_scorer(net, data_param, device, per_outfit=False, amp=config.amp)
    rel, binr = score_with_bar(cache, np.full(len(tuples), user), tuples, "recommend", show_progress)
    order = np.argsort(-binr, kind="stable")[:topk]
    rows = []
    for rank, i in enumerate(order):
        names = loader.dataset.get_names(tuples[i])
        rows.append(dict(rank=rank + 1, outfit=[int(x) for x in tuples[i]], items=names,
                         binary_score=float(binr[i]), score=float(rel[i]), label=int(labels[i])))
        print("%2d  %8.4f  %s%s" % (rank + 1, binr[i], " ".join(names),
                                    "  (positive)" if labels[i] else ""))
    result = dict(user=user, topk=rows)
    if grid:
        result["grid"] = draw_outfit_grid(grid, loader.dataset.datum, data_param.cate_map,
                                          [r["outfit"] for r in rows], user,
                                          [r["binary_score"] for r in rows], [r["label"] for r in rows])
        LOGGER.info("Outfit grid written to %s", grid)
    if export:
        export_codes(net, cache, export)
    return result


def export_codes(net, cache, path):
    """npz: user_codes (binary), item codes per branch/category with their item ids, lambdas."""
    out = dict(user_codes=net.sign(net.user_latent()).cpu().numpy())
    for (branch, cate), (index, table) in cache.codes.items():
        ids = np.array(sorted(index, key=index.get))
        out["item_ids_%s_%d" % (branch, cate)] = ids
        out["item_codes_%s_%d" % (branch, cate)] = net.sign(table).cpu().numpy().astype(np.int8)
    lambda_i, lambda_u, alpha = net.get_matching_weight()
    out.update(lambda_i=np.asarray(lambda_i), lambda_u=np.asarray(lambda_u), alpha=np.asarray(alpha))
    save_npz_atomic(path, **out)
    LOGGER.info("Codes exported to %s", path)
