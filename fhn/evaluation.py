"""Evaluation actions of scripts/run.py: pair accuracy, rank (AUC/NDCG), FITB, codes, recommend.

Default path = cached item codes: every distinct item is encoded once (CNN + encoder)
and outfits are scored from the stored codes with the net's own score function.
`per_outfit=True` runs upstream's loop (the CNN re-runs for every item of every
outfit); both give the same scores (tests/fhn/test_fhn_cached_eval.py).
"""
import logging
import os
import pickle
import shutil
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fhn import metrics
from fhn.data import fill_second_top, get_dataloader, get_img_trans, make_datum
from fhn.model import get_net, resolve_device, to_device  # noqa: F401  (resolve_device: re-exported)

LOGGER = logging.getLogger("fhn")


def update_npz(fn, results):
    """Merge `results` into the npz `fn` (ragged per-user lists as object arrays, quirk 2)."""
    if fn is None:
        return
    from common.checkpoint import atomic_open

    if not fn.endswith(".npz"):
        fn = fn + ".npz"  # what np.savez(fn) does with a bare name
    if os.path.exists(fn):
        with np.load(fn, allow_pickle=True) as old:
            merged = dict(old)
        merged.update(results)
        results = merged
    packed = {}
    for key, value in results.items():
        if isinstance(value, list) and value and isinstance(value[0], (list, np.ndarray)):
            arr = np.empty(len(value), dtype=object)
            for i, v in enumerate(value):
                arr[i] = np.asarray(v)
            value = arr
        packed[key] = value
    folder = os.path.dirname(fn)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with atomic_open(fn, "wb") as f:
        np.savez(f, **packed)


# ----- cached item codes -------------------------------------------------------------
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


class CNNCounter(object):
    """Counts images through net.features (forward hook)."""

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


def slot_items(tuples, cate_map):
    """(cate, item id) of every slot, after the -1 second-top fill."""
    tuples = np.stack([fill_second_top(t) for t in tuples]) if len(tuples) else tuples
    return {c: np.unique(tuples[:, [k for k, cc in enumerate(cate_map) if cc == c]])
            for c in sorted(set(cate_map))}, tuples


class CodeCache(object):
    """Relaxed item codes per branch/category; each distinct item encoded once."""

    def __init__(self, net, param, device, batch_size=64, num_workers=0, amp=False):
        self.net, self.param, self.device = net, param, device
        self.batch_size, self.num_workers, self.amp = batch_size, num_workers, amp
        _, self.datum = make_datum(param, get_img_trans(param.phase, param.image_size))
        self.codes = {}  # (branch, cate) -> {item id: row}, tensor

    def encode(self, items_per_cate):
        from common.runtime import autocast

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

    def score(self, uidx, tuples, chunk=4096):
        """(relaxed, binary) scores [N] of outfits `tuples` [N, K] for users `uidx` [N]."""
        items, tuples = slot_items(tuples, self.param.cate_map)
        self.encode(items)
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


def rank_scores(config, net, device, per_outfit=False, counter=None):
    """Per-user relaxed / binary score lists of positives and negatives."""
    data_param = config.data_param
    data_param.shuffle = False
    loader = get_dataloader(data_param)
    loader.make_nega()
    num_users = net.param.num_users
    if per_outfit:
        out = []
        for mode in ("PosiOnly", "NegaOnly"):
            loader.set_data_mode(mode)
            scores = [[] for _ in range(num_users)]
            binary = [[] for _ in range(num_users)]
            for inputv in loader:
                uidx = inputv[-1].view(-1)
                inputv = to_device(inputv, device)
                with torch.no_grad():
                    output = net(*inputv)
                for n, u in enumerate(uidx.tolist()):
                    scores[u].append(output[0][n].item())
                    binary[u].append(output[1][n].item())
            out.append((scores, binary))
        return out, loader
    cache = CodeCache(net, data_param, device, data_param.batch_size, data_param.num_workers,
                      getattr(config, "amp", False))
    out = []
    for uidx, tuples in rank_outfits(loader.dataset):
        rel, binr = cache.score(uidx, tuples)
        out.append((_per_user(num_users, uidx, rel), _per_user(num_users, uidx, binr)))
    return out, loader


def rank_metrics(posi_score, posi_binary, nega_score, nega_binary):
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


def evaluate_rank(config, device, per_outfit=False):
    LOGGER.info("Testing for NDCG and AUC.")
    net = get_net(config, device).eval()
    ((posi_score, posi_binary), (nega_score, nega_binary)), loader = rank_scores(
        config, net, device, per_outfit)
    results = rank_metrics(posi_score, posi_binary, nega_score, nega_binary)
    LOGGER.info(
        "Metric:\n- average ndcg:%.4f\n- average ndcg(binary):%.4f\n- mean auc:%.4f\n"
        "- mean auc(binary):%.4f",
        results["mean_ndcg"].mean(), results["mean_ndcg_binary"].mean(),
        results["mean_auc"], results["mean_auc_binary"],
    )
    update_npz(config.result_file, results)
    if config.result_dir is not None:
        save_ranked_outfits(config, loader, results)
    printed = dict(average_ndcg=float(results["mean_ndcg"].mean()),
                   average_ndcg_binary=float(results["mean_ndcg_binary"].mean()))
    return dict(results, **printed)


def save_ranked_outfits(config, loader, results):
    """result_dir: ndcg.txt, label/user-%03d.txt, outfit/user-%03d/top-%03d-%d/%02d.jpg."""
    data_param = config.data_param
    assert not data_param.variable_length, "result_dir needs fixed-length outfits"
    result_dir = config.result_dir
    posi_score, nega_score = results["posi_score"], results["nega_score"]
    labels = [np.array([1] * len(p) + [0] * len(n)) for p, n in zip(posi_score, nega_score)]
    outfits = loader.dataset.get_outfits_list()
    sorting = [np.argsort(-1.0 * np.array(p + n))
               for p, n in zip(results["posi_score_binary"], results["nega_score_binary"])]
    os.makedirs(os.path.join(result_dir, "label"), exist_ok=True)
    os.makedirs(os.path.join(result_dir, "outfit"), exist_ok=True)
    np.savetxt(os.path.join(result_dir, "ndcg.txt"), results["mean_ndcg_binary"])
    for uid, ranked_idx in enumerate(sorting):
        if uid >= len(outfits):
            break
        folder = os.path.join(result_dir, "outfit", "user-%03d" % uid)
        np.savetxt(os.path.join(result_dir, "label", "user-%03d.txt" % uid),
                   labels[uid][ranked_idx], fmt="%d")
        for n, idx in enumerate(ranked_idx):
            image_folder = os.path.join(folder, "top-%03d-%d" % (n, labels[uid][idx]))
            os.makedirs(image_folder, exist_ok=True)
            for cate, item_id in enumerate(outfits[uid][idx]):
                shutil.copy2(loader.dataset.get_image_path(cate, item_id),
                             os.path.join(image_folder, "%02d.jpg" % cate))
    LOGGER.info("All outfits are save in %s", result_dir)


# ----- evaluate-accuracy ---------------------------------------------------------------
def evaluate_accuracy(config, device, per_outfit=False):
    param = config.data_param
    loader = get_dataloader(param)
    net = get_net(config, device).eval()
    LOGGER.info("Testing for accuracy")
    loader.set_data_mode("PairWise")
    loader.make_nega()
    accuracy = binary = 0.0
    if per_outfit:
        for idx, inputv in enumerate(loader):
            batch_size = inputv[-1].numel()
            inputv = to_device(inputv, device)
            with torch.no_grad():
                output = net(*inputv)
            _, batch_results = net.gather(output)
            LOGGER.info("Batch [%d]/[%d] Accuracy %.3f Accuracy (Binary Codes) %.3f", idx,
                        loader.num_batch, batch_results["accuracy"], batch_results["binary_accuracy"])
            accuracy += batch_results["accuracy"] * batch_size
            binary += batch_results["binary_accuracy"] * batch_size
    else:
        ds = loader.dataset
        cache = CodeCache(net, param, device, param.batch_size, param.num_workers, config.amp)
        (posi_u, posi), (nega_u, nega) = rank_outfits(ds)
        p, bp = cache.score(posi_u, posi)
        n, bn = cache.score(nega_u, nega)
        pair = np.arange(len(nega)) // ds.ratio
        acc_vec = (p[pair] - n) > 0
        bin_vec = (bp[pair] - bn) > 0
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
def fitb(config, device, per_outfit=False):
    data_param = config.fitb_data_param
    LOGGER.info("Get data for FITB questions: %s", data_param)
    loader = get_dataloader(data_param)
    net = get_net(config, device).eval()
    correct = cnt = 0
    if per_outfit:
        for inputv in loader:
            inputv = to_device(inputv, device)
            with torch.no_grad():
                _, score_b = net(*inputv)
            # the first candidate is the ground truth; argmax takes the first maximum
            correct += int(torch.argmax(score_b).item() == 0)
            cnt += 1
    else:
        ds = loader.dataset
        cache = CodeCache(net, data_param, device, 64, data_param.num_workers, config.amp)
        rows = [ds.question(n) for n in range(len(ds.fitb))]
        uidx = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, int)
        tuples = np.concatenate([r[1] for r in rows]) if rows else np.zeros((0, 3), int)
        _, b = cache.score(uidx, tuples)
        b = b.reshape(len(rows), data_param.num_cand)
        correct = int((np.argmax(b, axis=1) == 0).sum())
        cnt = len(rows)
    fitb_acc = correct / cnt
    LOGGER.info("FITB Accuracy %.4f", fitb_acc)
    update_npz(config.result_file, dict(fitb_acc=fitb_acc))
    return dict(fitb_acc=fitb_acc)


# ----- extract-features / recommend ---------------------------------------------------
def extract_features(config, device):
    """feature_file pickle: user_codes, item_codes {name: [visual int8 or [], text int8 or []]}, lambdas."""
    from common.checkpoint import atomic_open

    LOGGER.info("Extract features.")
    data_param = config.data_param
    loader = get_dataloader(data_param)
    net = get_net(config, device).eval()
    user_codes = net.sign(net.user_latent()).cpu().numpy()
    lambda_i, lambda_u, alpha = net.get_matching_weight()
    cache = CodeCache(net, data_param, device, data_param.batch_size, data_param.num_workers, config.amp)
    items, tuples = slot_items(loader.dataset.posi, data_param.cate_map)
    cache.encode(items)
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


def recommend(config, device, user, topk=10, export=None, candidates="user"):
    """Top-k outfits for `user` by binary score from stored codes (= evaluate-rank's values)."""
    data_param = config.data_param
    data_param.shuffle = False
    loader = get_dataloader(data_param)
    loader.make_nega()
    net = get_net(config, device).eval()
    num_users = net.user_latent().shape[0]
    if not 0 <= user < num_users:
        raise ValueError("--user %d out of range: the net has %d users" % (user, num_users))
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
    cache = CodeCache(net, data_param, device, data_param.batch_size, data_param.num_workers, config.amp)
    rel, binr = cache.score(np.full(len(tuples), user), tuples)
    order = np.argsort(-binr, kind="stable")[:topk]
    rows = []
    for rank, i in enumerate(order):
        names = loader.dataset.get_names(tuples[i])
        rows.append(dict(rank=rank + 1, outfit=[int(x) for x in tuples[i]], items=names,
                         binary_score=float(binr[i]), score=float(rel[i]), label=int(labels[i])))
        print("%2d  %8.4f  %s%s" % (rank + 1, binr[i], " ".join(names),
                                    "  (positive)" if labels[i] else ""))
    if export:
        export_codes(net, cache, export)
    return dict(user=user, topk=rows)


def export_codes(net, cache, path):
    """npz: user_codes (binary), item codes per branch/category with their item ids, lambdas."""
    from common.checkpoint import atomic_open

    out = dict(user_codes=net.sign(net.user_latent()).cpu().numpy())
    for (branch, cate), (index, table) in cache.codes.items():
        ids = np.array(sorted(index, key=index.get))
        out["item_ids_%s_%d" % (branch, cate)] = ids
        out["item_codes_%s_%d" % (branch, cate)] = net.sign(table).cpu().numpy().astype(np.int8)
    lambda_i, lambda_u, alpha = net.get_matching_weight()
    out.update(lambda_i=np.asarray(lambda_i), lambda_u=np.asarray(lambda_u), alpha=np.asarray(alpha))
    with atomic_open(path, "wb") as f:
        np.savez(f, **out)
    LOGGER.info("Codes exported to %s", path)
