"""Evaluation: encode a split, compute the image x caption similarity matrix, i2t / t2i recall.

    python evaluation.py --model_path runs/LHSC/checkpoint/model_best.pth.tar --data_path data \
        --split test [--fold5] [--out_json r.json] [--out_scores sims.npy]

Defaults reproduce upstream's `__main__` (evalrank(<model_best>, data_path, split="test",
fold5=False)) and its printed lines. The similarity pass is vectorised and chunked to a memory
budget (`--shard_size`, `--max_mem`), its CPU matrix products through oneDNN (`--gemm`, see
lhsc/gemm.py); `--reference` runs upstream's per-caption loop instead.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":  # parse before the heavy imports below, so --help returns at once
    from lhsc.opts import build_eval_parser
    build_eval_parser().parse_known_args()  # main() parses again, strictly, after cli_main

import time

import numpy as np
import torch

from common.checkpoint import CheckpointError, load_checkpoint
from common.errors import cli_main
from common.logs import print_config, setup_logging
from common.progress import add_progress_arg
from common.progress import progress as progress_bar
from common.results import save_scores, write_results
from common.runtime import all_gather_cat, cleanup_distributed, init_distributed, is_main_process
from common.safeio import check_writable, fingerprint
from common.vocab import Vocabulary, deserialize_vocab
from lhsc import fastsim
from lhsc import gemm as gemms
from lhsc.data import get_test_loader
from lhsc.errors import LhscInputError
from lhsc.model import N_REGIONS, architecture, build_model
from lhsc.opts import build_eval_parser
from lhsc.opts import build_parser as build_train_parser

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT_BLOCK = 100  # captions encoded together (TextAttn has no padding mask: blocks must stay 100)


# ----------------------------------------------------------------------------- encoding

def encode_data(model, data_loader, log_step=10, logging=print, image_step=5):
    """Embed every caption, and the image of every `image_step`-th caption (upstream keeps
    img_embs[0::5] after embedding the image once per caption; in eval mode an image embedding
    does not depend on its batch, so only those rows are computed). Returns float32 arrays
    img_embs (ceil(N/5), 36, E), cap_embs (N, max_len, E) zero-padded, and cap_lens (list)."""
    model.val_start()
    n_caps = len(data_loader.dataset)
    img_rows, cap_rows, cap_lens = {}, [None] * n_caps, [0] * n_caps
    with torch.no_grad():
        batches = progress_bar(data_loader, desc='encode', unit='batch')
        for i, (images, captions, lengths, ids) in enumerate(batches):
            keep = [j for j, idx in enumerate(ids) if idx % image_step == 0]
            img_emb = model.img_enc(images[keep].to(model.device)).float().cpu().numpy() if keep else []
            for row, j in enumerate(keep):
                img_rows[ids[j] // image_step] = img_emb[row]
            cap_emb = model.txt_enc(captions.to(model.device), lengths).float().cpu().numpy()
            for j, idx in enumerate(ids):
                cap_rows[idx] = cap_emb[j, :lengths[j]]
                cap_lens[idx] = lengths[j]
    img_embs = np.stack([img_rows[k] for k in range(len(img_rows))]) if img_rows else \
        np.zeros((0, N_REGIONS, 0), np.float32)
    max_len, dim = max(cap_lens), cap_rows[0].shape[1]
    cap_embs = np.zeros((n_caps, max_len, dim), dtype=np.float32)
    for idx, row in enumerate(cap_rows):
        cap_embs[idx, :len(row)] = row
    return img_embs, cap_embs, cap_lens


# ----------------------------------------------------------------------------- similarity pass

def bytes_per_image_word(embed_size, sim_dim, n_regions=N_REGIONS, per_image=False):
    """Peak float32 bytes the vectorised pass keeps alive per (image, caption word). per_image
    (oneDNN path): the E-wide difference exists for one image at a time (a few MiB, not counted)."""
    return 4 * ((0 if per_image else 3 * embed_size) + 3 * n_regions + 3 * sim_dim)


def caption_chunks(cap_lens, n_images, max_mem_mib, per_word_bytes):
    """Caption index chunks, by descending length (little padding), each within the budget."""
    lens = np.asarray(cap_lens)
    order = np.argsort(-lens, kind='stable')
    budget = max_mem_mib * 2 ** 20
    chunks, current = [], []
    for idx in order:
        longest = lens[current[0]] if current else lens[idx]
        if current and n_images * (len(current) + 1) * longest * per_word_bytes > budget:
            chunks.append(current)
            current = []
        current.append(int(idx))
    if current:
        chunks.append(current)
    return chunks


TILE_WORDS = {False: 256, True: 512}  # caption words per image tile the chunker aims for, by gemm.per_image


def default_max_mem(device):
    """MiB per chunk when --max_mem is not given: cache-sized chunks on CPU (measured fastest in
    bench/lhsc_eval.py), large ones on a GPU."""
    return 2048 if torch.device(device).type == 'cuda' else 64


def shard_attn_scores(model, img_embs, cap_embs, cap_lens, opt=None, shard_size=100,
                      max_mem=None, reference=False, progress=True, gemm='onednn'):
    """(N_img, N_cap) float64 similarities. Image shards of `shard_size` (split across ranks
    under torchrun, then gathered); within a shard the vectorised pass runs over length-sorted
    caption chunks of at most `max_mem` MiB. reference=True: upstream's per-caption loop over
    100-caption shards (evaluation.py shard_attn_scores). gemm: 'onednn' (CPU float32 products
    through oneDNN, lhsc/gemm.py), 'torch', or a class with lhsc.gemm's interface."""
    n_img, n_cap = len(img_embs), len(cap_embs)
    device = model.device
    if max_mem is None:
        max_mem = default_max_mem(device)
    sim_enc = model.sim_enc
    sim_enc.eval()
    products = gemms.select(gemm, device) if isinstance(gemm, str) else gemm
    embed, sim_dim = cap_embs.shape[-1], sim_enc.sim_tranloc_w.out_features
    world, rank = 1, 0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    n_im_shard = (n_img - 1) // shard_size + 1
    rows, blocks = [], []
    with torch.no_grad():
        cap_glo = None
        if not reference:  # eval mode: per-caption global vectors are computed once, not per shard
            cap_glo = torch.cat([fastsim.caption_globals(
                sim_enc, torch.from_numpy(np.ascontiguousarray(cap_embs[k:k + 1000])).float().to(device),
                cap_lens[k:k + 1000], gemm=products) for k in range(0, n_cap, 1000)])
        for i in progress_bar(range(rank, n_im_shard, world), desc='similarity', enabled=progress, unit='shard'):
            im_start, im_end = shard_size * i, min(shard_size * (i + 1), n_img)
            im = torch.from_numpy(np.ascontiguousarray(img_embs[im_start:im_end])).float().to(device)
            block = np.zeros((im_end - im_start, n_cap))
            if reference:
                for ca_start in range(0, n_cap, shard_size):
                    ca_end = min(ca_start + shard_size, n_cap)
                    ca = torch.from_numpy(np.ascontiguousarray(cap_embs[ca_start:ca_end])).float().to(device)
                    block[:, ca_start:ca_end] = sim_enc.forward_loop(im, ca, cap_lens[ca_start:ca_end]).cpu().numpy()
            else:
                img_glo = fastsim.image_globals(sim_enc, im, products)
                per_word = bytes_per_image_word(embed, sim_dim, per_image=products.per_image)
                # tiles of a few images x many caption words: cache-sized, GEMM-friendly shapes
                tile = max(1, min(len(im), int(max_mem * 2 ** 20 / (per_word * TILE_WORDS[products.per_image]))))
                for t in range(0, len(im), tile):
                    side = fastsim.image_side(sim_enc, im[t:t + tile], products, img_glo=img_glo[t:t + tile])
                    for chunk in caption_chunks(cap_lens, min(tile, len(im) - t), max_mem, per_word):
                        lens = [cap_lens[j] for j in chunk]
                        ca = torch.from_numpy(cap_embs[chunk][:, :max(lens)]).float().to(device)
                        index = torch.as_tensor(chunk, device=device)
                        block[t:t + tile, chunk] = fastsim.scores(sim_enc, im[t:t + tile], ca, lens, cap_glo=cap_glo[index],
                                                                  image_side=side).double().cpu().numpy()
            if progress:
                sys.stdout.write('\r>> shard_attn_scores batch (%d,%d)' % (i, n_im_shard - 1))
                sys.stdout.flush()
            rows.append(np.arange(im_start, im_end))
            blocks.append(block)
    if progress:
        sys.stdout.write('\n')
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    blocks = np.concatenate(blocks) if blocks else np.zeros((0, n_cap))
    if world > 1:
        rows = all_gather_cat(torch.from_numpy(rows)).numpy()
        blocks = all_gather_cat(torch.from_numpy(blocks)).numpy()
    sims = np.zeros((n_img, n_cap))
    sims[rows] = blocks
    return sims


# ----------------------------------------------------------------------------- metrics

def i2t(images, captions, caplens, sims, npts=None, return_ranks=False):
    """Image -> text: rank of the best of captions 5i..5i+4 (upstream; npts is ignored)."""
    npts = sims.shape[0]
    ranks = np.zeros(npts)
    top1 = np.zeros(npts)
    for index in range(npts):
        inds = np.argsort(sims[index])[::-1]  # upstream tie order: numpy's default quicksort
        rank = 1e20
        for i in range(5 * index, 5 * index + 5, 1):
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks[index] = rank
        top1[index] = inds[0]
    return _summary(ranks, top1, return_ranks)


def t2i(images, captions, caplens, sims, npts=None, return_ranks=False):
    """Text -> image: rank of image j // 5 for caption j (upstream; npts is ignored)."""
    npts = sims.shape[0]
    ranks = np.zeros(5 * npts)
    top1 = np.zeros(5 * npts)
    sims = sims.T
    for index in range(npts):
        for i in range(5):
            inds = np.argsort(sims[5 * index + i])[::-1]
            ranks[5 * index + i] = np.where(inds == index)[0][0]
            top1[5 * index + i] = inds[0]
    return _summary(ranks, top1, return_ranks)


def recall_at_k(ranks, k):
    """Percentage of queries whose first positive is within the top k (SCAN: 100 * mean(r < k))."""
    ranks = np.asarray(ranks)
    return 100.0 * np.count_nonzero(ranks < k) / len(ranks)


def _summary(ranks, top1, return_ranks):
    r1, r5, r10 = recall_at_k(ranks, 1), recall_at_k(ranks, 5), recall_at_k(ranks, 10)
    medr = np.floor(np.median(ranks)) + 1
    meanr = ranks.mean() + 1
    if return_ranks:
        return (r1, r5, r10, medr, meanr), (ranks, top1)
    return (r1, r5, r10, medr, meanr)


def _named(r):
    return dict(zip(('r1', 'r5', 'r10', 'medr', 'meanr'), (float(x) for x in r)))


def retrieval_metrics(sims):
    """Upstream i2t/t2i on one (N, 5N) matrix, as the JSON dict (i2t, t2i, rsum, ar, ari)."""
    r = i2t(None, None, None, sims)
    ri = t2i(None, None, None, sims)
    ar = (r[0] + r[1] + r[2]) / 3
    ari = (ri[0] + ri[1] + ri[2]) / 3
    rsum = r[0] + r[1] + r[2] + ri[0] + ri[1] + ri[2]
    return {'i2t': _named(r), 't2i': _named(ri), 'rsum': float(rsum), 'ar': float(ar), 'ari': float(ari),
            'n_images': int(sims.shape[0]), 'n_captions': int(sims.shape[1])}


def print_full(m):
    """Upstream's lines for a full (non-fold5) evaluation (evaluation.py:150-154)."""
    print("rsum: %.1f" % m['rsum'])
    print("Average i2t Recall: %.1f" % m['ar'])
    print("Image to text: %.1f %.1f %.1f %.1f %.1f" % tuple(m['i2t'].values()))
    print("Average t2i Recall: %.1f" % m['ari'])
    print("Text to image: %.1f %.1f %.1f %.1f %.1f" % tuple(m['t2i'].values()))


def fold5_summary(folds):
    """Upstream's 'Mean metrics' lines (evaluation.py:186-198) plus the true means.

    Quirk 15 (inherited from SCAN/SGRAF): upstream prints 6*mean(ar) as 'rsum', mean(ari) as
    'Average i2t Recall' and mean(rsum) as 'Average t2i Recall'. Printed identically; the true
    means follow under a clearly labelled header and go to the JSON."""
    results = [list(f['i2t'].values()) + list(f['t2i'].values()) + [f['ar'], f['ari'], f['rsum']]
               for f in folds]
    m = tuple(np.array(results).mean(axis=0).flatten())
    print("-----------------------------------")
    print("Mean metrics: ")
    print("rsum: %.1f" % (m[10] * 6))
    print("Average i2t Recall: %.1f" % m[11])
    print("Image to text: %.1f %.1f %.1f %.1f %.1f" % m[:5])
    print("Average t2i Recall: %.1f" % m[12])
    print("Text to image: %.1f %.1f %.1f %.1f %.1f" % m[5:10])
    mean = {'i2t': _named(m[:5]), 't2i': _named(m[5:10]), 'rsum': float(m[12]), 'ar': float(m[10]),
            'ari': float(m[11]), 'n_images': int(sum(f['n_images'] for f in folds)),
            'n_captions': int(sum(f['n_captions'] for f in folds))}
    print("True mean metrics (port addition; upstream's labels above are shifted):")
    print("rsum: %.1f ar: %.1f ari: %.1f" % (mean['rsum'], mean['ar'], mean['ari']))
    return mean


# ----------------------------------------------------------------------------- loading

def resolve_vocab_file(vocab_path, data_name):
    """<vocab_path>/<data_name>_vocab.json; falls back to the copy shipped in lhsc/vocab/."""
    path = os.path.join(vocab_path, '%s_vocab.json' % data_name)
    if os.path.isfile(path):
        return path
    shipped = os.path.join(HERE, 'vocab', '%s_vocab.json' % data_name)
    if os.path.isfile(shipped):
        print('vocabulary %s not found; using the shipped copy %s' % (path, shipped))
        return shipped
    raise LhscInputError('vocabulary file not found: %s (pass --vocab_path DIR holding %s_vocab.json)'
                         % (path, data_name))


def load_vocab(vocab_path, data_name):
    """The SCAN JSON vocabulary for `data_name`; a damaged file is a clear error naming it."""
    path = resolve_vocab_file(vocab_path, data_name)
    try:
        return deserialize_vocab(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise LhscInputError('%s; pass a SCAN vocabulary JSON (--vocab_path)' % err) from None


def vocab_fingerprint(vocab):
    """sha256 of the vocabulary's words in id order (stored in checkpoints, checked at evaluation)."""
    return fingerprint(vocab.idx2word[i] for i in range(len(vocab)))


def _complete_state(module, state):
    """Checkpoints from torch 0.4.0 lack BatchNorm num_batches_tracked: fill 0 (unused in eval)."""
    state = type(state)(state)
    for key, value in module.state_dict().items():
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = torch.zeros_like(value)
    return state


def load_model(model_path, data_path=None, vocab_path=None, device='cpu'):
    """(model, opt, vocab, epoch) from an upstream (LHSC or SGRAF) or port checkpoint."""
    try:
        checkpoint = load_checkpoint(model_path, map_location='cpu',
                                     aliases={'vocab.Vocabulary': Vocabulary})
    except CheckpointError as err:
        raise LhscInputError(str(err)) from None
    if not isinstance(checkpoint, dict) or 'model' not in checkpoint or 'opt' not in checkpoint \
            or not hasattr(checkpoint['opt'], 'data_name'):
        raise LhscInputError('%s: not an LHSC/SGRAF checkpoint (needs the keys "model" and "opt" with '
                             'the training options); pass a checkpoint written by LHSC, SGRAF or this port'
                             % model_path)
    opt = checkpoint['opt']
    opt.model = architecture(opt)
    for key, value in vars(build_train_parser().parse_args([])).items():
        if not hasattr(opt, key):
            setattr(opt, key, value)
    if data_path is not None:
        opt.data_path = data_path
    if vocab_path is not None:
        opt.vocab_path = vocab_path
    vocab = load_vocab(opt.vocab_path, opt.data_name)
    opt.vocab_size = len(vocab)
    state = checkpoint['model']
    if not isinstance(state, (list, tuple)) or len(state) != 3 or not all(isinstance(sd, dict) for sd in state):
        raise LhscInputError('%s: "model" must be the list [img_enc, txt_enc, sim_enc] state dicts'
                             % model_path)
    if 'embed.weight' not in state[1]:
        raise LhscInputError('%s: the text encoder has no "embed.weight": not an LHSC/SGRAF checkpoint'
                             % model_path)
    n_words = state[1]['embed.weight'].shape[0]
    vocab_file = os.path.join(opt.vocab_path, opt.data_name)
    if n_words != len(vocab):
        raise LhscInputError('%s: the checkpoint embeds %d words but the vocabulary %s has %d; pass the '
                             'vocabulary it was trained with (--vocab_path)'
                             % (model_path, n_words, vocab_file, len(vocab)))
    stored = checkpoint.get('vocab_fingerprint')
    if stored is None:
        print('%s records no vocabulary fingerprint (an upstream checkpoint): only the vocabulary size '
              '(%d words) was checked, not the words themselves' % (model_path, n_words))
    elif stored != vocab_fingerprint(vocab):
        raise LhscInputError('%s: trained with another vocabulary than %s (same size, different words); '
                             'pass the vocabulary it was trained with (--vocab_path)' % (model_path, vocab_file))
    try:
        model = build_model(opt, device=device)
        model.load_state_dict([_complete_state(enc, sd) for enc, sd in
                               zip((model.img_enc, model.txt_enc, model.sim_enc), state)])
    except (RuntimeError, ValueError) as err:
        raise LhscInputError('%s: the weights do not fit the options stored with them (%s); the file is '
                             'damaged or not an LHSC/SGRAF checkpoint' % (model_path, str(err).splitlines()[0])) from None
    return model, opt, vocab, checkpoint.get('epoch')


# ----------------------------------------------------------------------------- evalrank

def evalrank(model_path, data_path=None, split='dev', fold5=False, vocab_path=None, device='cpu',
             shard_size=100, max_mem=None, reference=False, ensemble=None, fold_images=1000, gemm='onednn'):
    """Upstream evalrank; returns (metrics dict, sims). `ensemble`: extra checkpoint paths whose
    similarity matrices are averaged with this one's (SGRAF = mean of its SAF and SGR models)."""
    paths = [model_path] + list(ensemble or [])
    encoded = []
    for path in paths:
        model, opt, vocab, save_epoch = load_model(path, data_path, vocab_path, device)
        print(opt)
        print('Loading dataset')
        data_loader = get_test_loader(split, opt.data_name, vocab, opt.batch_size, opt.workers, opt)
        print("=> loaded checkpoint_epoch {}".format(save_epoch))
        print('Computing results...')
        img_embs, cap_embs, cap_lens = encode_data(model, data_loader)
        print('Images: %d, Captions: %d' % (cap_embs.shape[0] // 5, cap_embs.shape[0]))
        encoded.append((model, img_embs, cap_embs, cap_lens))

    def similarity(img_sel, cap_sel):
        sims = None
        start = time.time()
        for model, img_embs, cap_embs, cap_lens in encoded:
            s = shard_attn_scores(model, img_embs[img_sel], cap_embs[cap_sel], cap_lens[cap_sel],
                                  shard_size=shard_size, max_mem=max_mem, reference=reference,
                                  progress=is_main_process(), gemm=gemm)
            sims = s if sims is None else sims + s
        print("calculate similarity time:", time.time() - start)
        check_scores_finite(sims, paths)
        return sims / len(encoded)

    n_caps = encoded[0][2].shape[0]
    if not fold5:
        sims = similarity(slice(None), slice(None))
        metrics = retrieval_metrics(sims)
        print_full(metrics)
        return metrics, sims
    if n_caps < 25 * fold_images:
        raise LhscInputError('--fold5 needs 5 folds of %d images (coco testall: 25000 captions); '
                         'this split has %d captions' % (fold_images, n_caps))
    folds, fold_sims = [], []
    for i in range(5):
        # upstream: img_embs[5000i:5000(i+1):5] (every 5th caption's image) and captions 5000i..
        sims = similarity(slice(i * fold_images, (i + 1) * fold_images),
                          slice(i * 5 * fold_images, (i + 1) * 5 * fold_images))
        m = retrieval_metrics(sims)
        print("Image to text: %.1f, %.1f, %.1f, %.1f, %.1f" % tuple(m['i2t'].values()))
        print("Text to image: %.1f, %.1f, %.1f, %.1f, %.1f" % tuple(m['t2i'].values()))
        print("rsum: %.1f ar: %.1f ari: %.1f" % (m['rsum'], m['ar'], m['ari']))
        folds.append(m)
        fold_sims.append(sims)
    mean = fold5_summary(folds)
    metrics = dict(mean, folds=folds, mean=mean)
    return metrics, np.stack(fold_sims)


def check_scores_finite(sims, paths):
    """NaN/inf similarities (from NaN features or weights) would rank silently: stop instead."""
    bad = ~np.isfinite(sims)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise LhscInputError('%s: %d non-finite similarities (first: image %d, caption %d); the region '
                             'features or the checkpoint hold NaN/inf values' % (', '.join(paths), bad.sum(),
                                                                                rows[0], cols[0]))


def run(args, argv=None, architecture_required=None):
    """Evaluate with parsed evaluation flags `args` (shared by lhsc/ and lhsc/sgraf/ entry scripts)."""
    given = sys.argv[1:] if argv is None else argv
    explicit_model = any(a.startswith('--model_path') for a in given)
    if args.ensemble:
        paths = ([args.model_path] if explicit_model else []) + args.ensemble
        model_path, extra = paths[0], paths[1:]
    else:
        model_path, extra = args.model_path, None
    if args.gemm not in gemms.CHOICES:
        raise LhscInputError('--gemm %s: choose one of %s' % (args.gemm, ', '.join(gemms.CHOICES)))
    setup_logging()
    print_config(args)
    for out, what in ((args.out_json, 'metrics JSON (--out_json)'), (args.out_scores, 'score matrix (--out_scores)')):
        if out:  # before the (long) evaluation, not after it
            check_writable(out, what)
    if architecture_required is not None:
        for path in [model_path] + list(extra or []):
            check_architecture(path, architecture_required)
    info = init_distributed(args.device)
    print(time.strftime("%Y-%m-%d  %H:%M:%S", time.localtime()))
    metrics, sims = evalrank(model_path, data_path=args.data_path, split=args.split, fold5=args.fold5,
                             vocab_path=args.vocab_path, device=info.device, shard_size=args.shard_size,
                             max_mem=args.max_mem, reference=args.reference, ensemble=extra, gemm=args.gemm)
    if info.is_main:
        if args.out_scores:
            save_scores(args.out_scores, sims)
        if args.out_json:
            write_results(args.out_json, metrics, 'lhsc', argv=argv,
                          checkpoint=[model_path] + list(extra or []), data_path=args.data_path,
                          extra={'split': args.split, 'fold5': args.fold5})
    cleanup_distributed()  # leaving gloo's threads running aborts the process at exit
    return metrics


def check_architecture(path, wanted):
    """lhsc/sgraf/evaluation.py evaluates SGRAF checkpoints only (and says where LHSC's go)."""
    try:
        checkpoint = load_checkpoint(path, map_location='cpu', aliases={'vocab.Vocabulary': Vocabulary})
    except CheckpointError as err:
        raise LhscInputError(str(err)) from None
    opt = checkpoint.get('opt') if isinstance(checkpoint, dict) else None
    if opt is None or not hasattr(opt, 'data_name'):
        raise LhscInputError('%s: not an LHSC/SGRAF checkpoint (needs the keys "model" and "opt")' % path)
    found = architecture(opt)
    if found != wanted:
        raise LhscInputError('%s is an %s checkpoint; evaluate it with %s' % (
            path, found, 'lhsc/evaluation.py' if found == 'LHSC' else 'lhsc/sgraf/evaluation.py'))


def main(argv=None):
    args = add_progress_arg(build_eval_parser()).parse_args(argv)
    return run(args, argv)


if __name__ == "__main__":
    cli_main(main)
