"""The training loop shared by lhsc/train.py (LHSC, or SGRAF with --model SGRAF) and
lhsc/sgraf/train.py (SGRAF's own flags): epochs, validation on dev, checkpoints, --resume."""
import glob
import logging
import os
import re
import time

import torch
import torch.distributed as dist

from common import logger as tb_logger
from common.atomic import atomic_open
from common.checkpoint import CheckpointError, copy_to_best, load_checkpoint
from common.logger import AverageMeter, LogCollector
from common.logs import print_config
from common.progress import progress
from common.runtime import barrier, cleanup_distributed, init_distributed, rng_state, seed_everything, set_rng_state
from common.safeio import all_finite, check_finite, check_writable_dir, cleanup_stale_tmp, fingerprint
from common.vocab import deserialize_vocab
from lhsc import data
from lhsc.errors import LhscInputError
from lhsc.evaluation import encode_data, i2t, resolve_vocab_file, shard_attn_scores, t2i
from lhsc.model import architecture, build_model


def vocab_fingerprint(vocab):
    """sha256 of the vocabulary's words in id order (stored in checkpoints, checked at evaluation)."""
    return fingerprint(vocab.idx2word[i] for i in range(len(vocab)))


def run(opt, progress_bars=True):
    """Train with the parsed options `opt`; returns the best dev R-sum."""
    info = init_distributed(opt.device_spec)
    seed_everything(opt.seed, opt.deterministic)
    # upstream's logging.basicConfig: timestamped lines on stderr (as before; tests count them there)
    logging.basicConfig(format='%(asctime)s %(message)s', level=logging.INFO, force=True)
    if info.is_main:
        print_config(opt)
        prepare_outputs(opt)
        tb_logger.configure(opt.logger_name, flush_secs=5)

    vocab = deserialize_vocab(resolve_vocab_file(opt.vocab_path, opt.data_name))
    opt.vocab_size = len(vocab)
    train_loader, val_loader = data.get_loaders(opt.data_name, vocab, opt.batch_size, opt.workers,
                                                opt, world_size=info.world_size)
    try:
        model = build_model(opt, device=info.device, amp=opt.amp, dist_info=info)
    except ValueError as err:  # e.g. --embed_size not divisible by 4 (IM_GCN)
        raise LhscInputError(str(err)) from None
    model.step_seed = opt.seed or 0
    if info.distributed:
        broadcast_parameters(model)

    best_rsum, start_epoch = 0, 0
    if opt.resume:
        start_epoch, best_rsum = resume(opt, model, vocab)

    for epoch in range(start_epoch, opt.num_epochs):
        if info.is_main:
            print(opt.logger_name)
            print(opt.model_name)
        adjust_learning_rate(opt, model.optimizer, epoch)
        reseed_shuffle(train_loader, opt.seed, epoch)

        train(opt, train_loader, model, epoch, val_loader, progress_bars)
        r_sum = validate(opt, val_loader, model)

        is_best = r_sum > best_rsum
        best_rsum = max(r_sum, best_rsum)
        if info.is_main:
            state = model.state_dict()
            if not all_finite(dict(enumerate(state))):
                raise LhscInputError('non-finite weights after epoch %d; nothing saved. Lower the learning '
                                     'rate or check the inputs for NaN/inf values' % epoch)
            save_checkpoint({
                'epoch': epoch + 1,
                'model': state,
                'best_rsum': best_rsum,
                'opt': opt,
                'Eiters': model.Eiters,
                'optimizer': model.optimizer.state_dict(),  # port additions, for --resume
                'rng_state': rng_state(),
                'vocab_fingerprint': vocab_fingerprint(vocab),
            }, is_best, filename='checkpoint_{}.pth.tar'.format(epoch), prefix=opt.model_name + '/')
        barrier()
    if info.is_main:
        tb_logger.close()
    cleanup_distributed()
    return best_rsum


def prepare_outputs(opt):
    """Before any work: both output folders writable (upstream failed only after a whole epoch),
    leftovers of interrupted checkpoint writes removed."""
    check_writable_dir(opt.model_name, 'checkpoint folder (--model_name)')
    check_writable_dir(opt.logger_name, 'TensorBoard folder (--logger_name)')
    for leftover in cleanup_stale_tmp(opt.model_name):
        print('removed %s (left by an interrupted checkpoint write)' % leftover)


def train(opt, train_loader, model, epoch, val_loader, progress_bars=True):
    batch_time = AverageMeter()
    data_time = AverageMeter()
    train_logger = LogCollector()
    main_process = model.dist_info is None or model.dist_info.is_main

    end = time.time()
    batches = progress(train_loader, desc='epoch %d' % epoch, enabled=progress_bars and main_process,
                       unit='batch')
    for i, train_data in enumerate(batches):
        model.train_start()
        data_time.update(time.time() - end)
        model.logger = train_logger
        loss = model.train_emb(*train_data)
        check_finite(loss, 'epoch %d step %d (iteration %d)' % (epoch, i, model.Eiters))
        batch_time.update(time.time() - end)
        end = time.time()

        if main_process and model.Eiters % opt.log_step == 0:
            logging.info(
                'Epoch: [{0}][{1}/{2}]\t'
                '{e_log}\t'
                'Time {batch_time.val:.3f} ({batch_time.avg:.3f})\t'
                'Data {data_time.val:.3f} ({data_time.avg:.3f})\t'
                .format(epoch, i, len(train_loader), batch_time=batch_time,
                        data_time=data_time, e_log=str(model.logger)))
        if main_process:
            tb_logger.log_value('epoch', epoch, step=model.Eiters)
            tb_logger.log_value('step', i, step=model.Eiters)
            tb_logger.log_value('batch_time', batch_time.val, step=model.Eiters)
            tb_logger.log_value('data_time', data_time.val, step=model.Eiters)
            model.logger.tb_log(tb_logger, step=model.Eiters)

        if model.Eiters % opt.val_step == 0:
            validate(opt, val_loader, model)
def validate(opt, val_loader, model):
    """Dev R-sum (first 5000 captions); logs upstream's lines and TensorBoard scalars."""
    img_embs, cap_embs, cap_lens = encode_data(model, val_loader, opt.log_step, logging.info)
    main_process = model.dist_info is None or model.dist_info.is_main

    start = time.time()
    sims = shard_attn_scores(model, img_embs, cap_embs, cap_lens, opt,
                             shard_size=getattr(opt, 'shard_size', 100),
                             max_mem=getattr(opt, 'max_mem', None), progress=main_process)
    end = time.time()
    if main_process:
        print("calculate similarity time:", end - start)

    (r1, r5, r10, medr, meanr) = i2t(img_embs, cap_embs, cap_lens, sims)
    (r1i, r5i, r10i, medri, meanri) = t2i(img_embs, cap_embs, cap_lens, sims)
    r_sum = r1 + r5 + r10 + r1i + r5i + r10i
    if not main_process:
        return r_sum
    logging.info("Image to text: %.1f, %.1f, %.1f, %.1f, %.1f" % (r1, r5, r10, medr, meanr))
    logging.info("Text to image: %.1f, %.1f, %.1f, %.1f, %.1f" % (r1i, r5i, r10i, medri, meanri))
    if architecture(opt) == 'LHSC':
        logging.info("rsum: %.1f" % r_sum)  # LHSC's extra line
        names = ('a/r1', 'a/r5', 'a/r10', 'b/medr', 'b/meanr', 'a/r1i', 'a/r5i', 'a/r10i',
                 'b/medri', 'b/meanri', 'a/r_sum')
    else:
        names = ('r1', 'r5', 'r10', 'medr', 'meanr', 'r1i', 'r5i', 'r10i', 'medri', 'meanri', 'r_sum')
    # upstream logs t2i meanr under the i2t name again ('b/meanr' twice, the second overwriting
    # the first): each scalar is written once here, t2i's as 'b/meanri' ('meanri' for SGRAF)
    values = (r1, r5, r10, medr, meanr, r1i, r5i, r10i, medri, meanri, r_sum)
    for name, value in zip(names, values):
        tb_logger.log_value(name, value, step=model.Eiters)
    return r_sum


def save_checkpoint(state, is_best, filename='checkpoint.pth.tar', prefix=''):
    """Atomic torch.save, then an atomic copy to model_best.pth.tar when best (upstream layout).
    A kill at any moment leaves the old or the new complete file (and a temp file that the next
    start removes)."""
    path = prefix + filename
    with atomic_open(path, 'wb') as f:
        torch.save(state, f)
    if is_best:
        copy_to_best(path, prefix + 'model_best.pth.tar')


def adjust_learning_rate(opt, optimizer, epoch):
    """lr = learning_rate * 0.1 ** (epoch // lr_update)."""
    lr = opt.learning_rate * (0.1 ** (epoch // opt.lr_update))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr


def reseed_shuffle(train_loader, seed, epoch):
    """Epoch-dependent shuffling so a resumed run sees the same batches as an uninterrupted one."""
    sampler = getattr(train_loader, 'sampler', None)
    if hasattr(sampler, 'set_epoch'):
        sampler.set_epoch(epoch)  # DistributedSampler: seed + epoch
    elif seed is not None and train_loader.generator is not None:
        train_loader.generator.manual_seed(seed * 100003 + epoch)


def latest_checkpoint(folder):
    found = []
    for path in glob.glob(os.path.join(folder, 'checkpoint_*.pth.tar')):
        match = re.search(r'checkpoint_(\d+)\.pth\.tar$', path)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def resume(opt, model, vocab):
    """Restore model, optimizer, Eiters; returns (start_epoch, best_rsum)."""
    path = latest_checkpoint(opt.model_name) if opt.resume == 'auto' else opt.resume
    if path is None:
        print('--resume auto: no checkpoint_<epoch>.pth.tar in %s, starting from scratch' % opt.model_name)
        return 0, 0
    try:
        checkpoint = load_checkpoint(path, map_location='cpu')
    except CheckpointError as err:
        raise LhscInputError(str(err)) from None
    try:
        n_words = checkpoint['model'][1]['embed.weight'].shape[0]
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LhscInputError('%s: not an LHSC/SGRAF checkpoint (no text encoder "embed.weight" in "model"); '
                             'resume from a checkpoint written by this train.py' % path) from None
    if n_words != opt.vocab_size:
        raise LhscInputError('%s embeds %d words but the vocabulary has %d: resume with the vocabulary '
                             'it was trained with (--vocab_path)' % (path, n_words, opt.vocab_size))
    stored = checkpoint.get('vocab_fingerprint')
    if stored is not None and stored != vocab_fingerprint(vocab):
        raise LhscInputError('%s was trained with another vocabulary of the same size (fingerprint '
                             'differs): resume with the vocabulary it was trained with (--vocab_path)' % path)
    try:
        model.load_state_dict(checkpoint['model'])
    except RuntimeError as err:
        raise LhscInputError('%s does not fit this configuration (%s); resume with the flags it was '
                             'trained with' % (path, str(err).splitlines()[0])) from None
    if 'optimizer' in checkpoint:
        model.optimizer.load_state_dict(checkpoint['optimizer'])
    else:
        print('%s has no optimizer state (an upstream checkpoint): Adam restarts from zero moments' % path)
    model.Eiters = checkpoint.get('Eiters', 0)
    if 'rng_state' in checkpoint:
        set_rng_state(checkpoint['rng_state'])  # older checkpoints: torch's state alone
    print("=> resumed from '{}' (epoch {}, best_rsum {})".format(path, checkpoint['epoch'],
                                                                 checkpoint.get('best_rsum', 0)))
    return checkpoint['epoch'], checkpoint.get('best_rsum', 0)


def broadcast_parameters(model):
    """Start every rank from rank 0's weights."""
    for enc in (model.img_enc, model.txt_enc, model.sim_enc):
        for tensor in list(enc.parameters()) + list(enc.buffers()):
            dist.broadcast(tensor.data, 0)


