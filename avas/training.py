"""Training steps of both stages (upstream ships no training loop; each choice is documented in
avas/README.md "Training"): one epoch of ALIGN (CLIP + MKG) or ranking (RankNet) updates, the
atomic checkpoint writes, and the RNG state that makes --resume continue exactly."""
import logging
import os
import time

import torch
from torch.utils.data import DataLoader

from avas.align_model import recalibrate_batchnorm
from avas.data import collate_align
from avas.evaluation import pair_text_features
from avas.loss import pair_softmax, rank_sigmoid_loss
from avas.tokenization import tokenize, vocab_fingerprint
from common import logger
from common.atomic import atomic_open
from common.checkpoint import copy_to_best, load_checkpoint
from common.errors import InputError
from common.progress import progress
from common.runtime import autocast, distributed_sampler, make_generator
from common.runtime import rng_state as common_rng_state
from common.runtime import set_rng_state as common_set_rng_state
from common.safeio import NonFiniteError, all_finite, check_finite

log = logging.getLogger('avas')


def save_atomic(obj, path):
    """torch.save(obj) to path via a temp file + rename: a kill leaves the old or the new file."""
    if isinstance(obj, dict) and not all_finite(obj):
        raise NonFiniteError('%s: refusing to save non-finite weights' % path)
    with atomic_open(path, 'wb') as f:
        torch.save(obj, f)


def rng_state(generator=None):
    """Python, numpy, torch, CUDA (and the loader's shuffling generator) states for checkpoint_last."""
    state = common_rng_state()
    if generator is not None:
        state['loader'] = generator.get_state()
    return state


def set_rng_state(state, generator=None):
    common_set_rng_state(state)  # also reads the older layout (numpy keys as a tensor in the tuple)
    if generator is not None and 'loader' in state:
        generator.set_state(state['loader'])


def freeze_unused_align_params(model, mkg_weight):
    """Parameters no loss touches stay fixed (DDP needs a gradient for every trained one): the BERT
    pooler (upstream takes the CLS hidden state) and, without the MKG loss, the MKG head."""
    unused = list(model.text_model.pooler.parameters()) if model.text_model.pooler is not None else []
    if mkg_weight <= 0:
        unused += list(model.relations_emb.parameters()) + list(model.linear_relation.parameters())
    for param in unused:
        param.requires_grad_(False)


def _update(optimizer, scaler, loss):
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def train_align_epoch(ddp_model, model, loader, optimizer, scaler, device, epoch, step, mkg_weight=1.0,
                      amp=False, max_steps=0, log_every=10, is_main=True, show_progress=True):
    """One epoch of CLIP + mkg_weight * TransE updates; returns (LogCollector, global step)."""
    ddp_model.train()
    meters = logger.LogCollector()
    mkg = 'in_batch' if mkg_weight > 0 else None
    for images, texts in progress(loader, desc='epoch %d' % epoch, unit='batch', enabled=show_progress and is_main):
        if max_steps and step >= max_steps:
            break
        start = time.time()
        images, text = images.to(device), tokenize(model.tokenizer, texts, device)
        with autocast(device, amp):
            out = ddp_model(images, text, mkg=mkg)
            loss_clip, loss_mkg = (out[0], out[1].mean()) if mkg else (out, torch.zeros((), device=device))
            loss = loss_clip + mkg_weight * loss_mkg
        check_finite(loss.item(), 'epoch %d step %d' % (epoch, step + 1))
        _update(optimizer, scaler, loss)
        step += 1
        for k, v in (('loss', loss), ('loss_clip', loss_clip), ('loss_mkg', loss_mkg)):
            meters.update(k, v.item(), images.shape[0])
        if is_main:
            meters.tb_log(logger, prefix='train/', step=step)
            logger.log_value('train/logit_scale', model.logit_scale.item(), step)
            if step % log_every == 0 or step == 1:
                print('epoch %d step %d  %s  (%.2fs/step)' % (epoch, step, meters, time.time() - start))
    return meters, step


def recalibrate(model, loader, n_batches, device):
    """--recalibrate_bn N: BN statistics re-estimated over N training batches before saving."""
    if n_batches:
        recalibrate_batchnorm(model, (b[0] for _, b in zip(range(n_batches), loader)), device)


def train_ranking_epoch(scorer, model, loader, optimizer, scaler, device, epoch, step, softmax=0, freeze=1,
                        text_batch_size=64, amp=False, max_steps=0, eval_per_step=32, is_main=True,
                        show_progress=True):
    """One epoch of RankNet updates on shuffled train pairs; returns (LogCollector, step, n_dropped)."""
    model.train()
    if freeze:  # port choice: a frozen ALIGN stays in eval mode (no BN drift, no dropout)
        model.align_model.eval()
    meters, n_dropped = logger.LogCollector(), 0
    for batch, dropped in progress(loader, desc='epoch %d' % epoch, unit='batch', enabled=show_progress and is_main):
        n_dropped += len(dropped)
        if batch is None:
            continue
        if max_steps and step >= max_steps:
            break
        with torch.no_grad():  # upstream computes text features detached, inside the loader
            pois_feature = pair_text_features(model.align_model, batch.text, device, model.use_norm, text_batch_size)
        with autocast(device, amp):
            s1, s2 = scorer(batch.img_1.to(device), batch.img_2.to(device), pois_feature,
                            batch.mean_poi_img_vec.to(device), batch.poi_text_vec.to(device), batch.poi_len.to(device))
        s1, s2 = s1.float(), s2.float()
        if softmax:
            s1, s2 = pair_softmax(s1, s2)
        loss = rank_sigmoid_loss(s1, s2, batch.label.to(device))
        check_finite(loss.item(), 'epoch %d step %d' % (epoch, step + 1))
        _update(optimizer, scaler, loss)
        step += 1
        meters.update('loss', loss.item(), len(batch.text))
        if is_main:
            logger.log_value('train/loss', loss.item(), step)
            if step % eval_per_step == 0 or step == 1:
                print('epoch %d step %d  %s' % (epoch, step, meters))
    return meters, step, n_dropped


def align_loader(dataset, batch_size, num_workers, seed, source):
    """Shuffled loader of AlignPairs (DDP: a distributed sampler); the generator is returned so its
    state goes into checkpoint_last. 0 steps per epoch is an error."""
    sampler = distributed_sampler(dataset, shuffle=True, seed=seed or 0)
    generator = make_generator(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=num_workers, collate_fn=collate_align, drop_last=len(dataset) > batch_size,
                        generator=generator)
    if len(loader) == 0:
        raise InputError('%s: %d usable pairs give 0 training steps per epoch with --batch_size %d'
                         % (source, len(dataset), batch_size))
    return loader, sampler, generator


def restore_training(path, model, optimizer, scaler, generator, *extra_keys):
    """--resume: weights, optimizer, scaler and RNG states of the last complete epoch."""
    state = load_checkpoint(path)
    for key in ('epoch', 'step', 'state_dict', 'optimizer', 'scaler') + extra_keys:
        if not isinstance(state, dict) or key not in state:
            raise InputError('%s: not a checkpoint_last.pth of this training script (no %r); pass that file '
                             'to --resume' % (path, key))
    expected = state.get('vocab_fingerprint')
    tokenizer = getattr(getattr(model, 'align_model', model), 'tokenizer', None)
    if expected is not None and tokenizer is not None and expected != vocab_fingerprint(tokenizer):
        raise InputError('%s: trained with another vocabulary than the vocab.txt of --bert_path; pass the '
                         '--bert_path used for training' % path)
    model.load_state_dict(state['state_dict'])
    optimizer.load_state_dict(state['optimizer'])
    scaler.load_state_dict(state['scaler'])
    if 'rng' in state:
        set_rng_state(state['rng'], generator)
    log.info('resumed from %s (epoch %d, step %d)', path, state['epoch'], state['step'])
    return state


def save_align_epoch(save_dir, model_name, model, optimizer, scaler, generator, epoch, step, meters, min_loss,
                     best_path):
    """Best-so-far AVAS-layout checkpoint (+ atomic copy to align_model.pth), then checkpoint_last."""
    epoch_loss = meters.meters['loss'].avg
    fingerprint = vocab_fingerprint(model.tokenizer)
    if epoch_loss < min_loss:
        min_loss = epoch_loss
        best_path = os.path.join(save_dir, '%s_iteration_%d_%.4f_%.3f_%.3f.pth' % (
            model_name, step, epoch_loss, meters.meters['loss_clip'].avg, meters.meters['loss_mkg'].avg))
        save_atomic({'epoch': epoch, 'min_loss': min_loss, 'state_dict': model.state_dict(),
                     'vocab_fingerprint': fingerprint}, best_path)
        copy_to_best(best_path, os.path.join(save_dir, 'align_model.pth'))
        log.info('save model to %s', best_path)
    save_atomic({'epoch': epoch, 'step': step, 'min_loss': min_loss, 'best_path': best_path,
                 'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
                 'rng': rng_state(generator), 'vocab_fingerprint': fingerprint},
                os.path.join(save_dir, 'checkpoint_last.pth'))
    return min_loss, best_path


def save_ranking_epoch(save_dir, model_name, model, optimizer, scaler, generator, epoch, step, acc, best_acc,
                       best_path):
    """The best dev accuracy as a bare state_dict named like the release
    (<model_name>_<epoch:03d>_<acc:.4f>.ckpt), then checkpoint_last for --resume."""
    if acc > best_acc:
        best_acc = acc
        best_path = os.path.join(save_dir, '%s_%03d_%.4f.ckpt' % (model_name, epoch, acc))
        save_atomic(model.state_dict(), best_path)
        log.info('save best model to %s', best_path)
    save_atomic({'epoch': epoch, 'step': step, 'best_acc': best_acc, 'best_path': best_path,
                 'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
                 'rng': rng_state(generator), 'vocab_fingerprint': vocab_fingerprint(model.align_model.tokenizer)},
                os.path.join(save_dir, 'checkpoint_last.pth'))
    return best_acc, best_path
