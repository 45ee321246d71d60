"""The training loop shared by train_global.py and train_local.py (upstream train_*.py, which are
identical apart from the model, the evaluation function and the alpha/beta loss weights)."""
import logging
import os
import random
import sys
import time

import numpy as np
import torch
from torch.nn.utils.clip_grad import clip_grad_norm_

from common import logger as tb_logger
from common.errors import InputError
from common.logs import print_config, setup_logging
from common.progress import progress
from common.checkpoint import copy_to_best
from common.runtime import (autocast, barrier, cleanup_distributed, distributed_sampler, export_gpu_id,
                            init_distributed, make_grad_scaler, rng_state, seed_everything, set_rng_state,
                            wrap_ddp)
from common.safeio import NonFiniteError, all_finite, check_finite, check_writable, cleanup_stale_tmp
from m2hse import data_provider as data
from m2hse import opts
from m2hse.checkpoints import (check_vocabulary, load_model_checkpoint, load_weights,
                               prefixed_state_dict, save_atomic, vocab_fingerprint)
from m2hse.evaluation import evaluate, log_performance, logging_func
from m2hse.model import MultiSpringBalanceLoss, build_model

log = logging.getLogger('m2hse').info  # timestamped lines (common.logs.setup_logging)


def loss_weights(level, opt):
    """Global uses alpha_1/alpha_2, local beta_1/beta_2 (the other pair is declared but unused)."""
    return (opt.alpha_1, opt.alpha_2) if level == 'global' else (opt.beta_1, opt.beta_2)


def apply_gpuid(opt, argv, distributed):
    """Upstream exported --gpuid as CUDA_VISIBLE_DEVICES unconditionally; we do it only when the flag
    is given explicitly and not under torchrun (where it would hide the other ranks' GPUs)."""
    argv = sys.argv[1:] if argv is None else argv
    if distributed or not any(a == '--gpuid' or a.startswith('--gpuid=') for a in argv):
        return
    device_count = len(str(opt.gpuid).split(","))
    if device_count not in (1, 2):  # upstream asserted this
        raise InputError('--gpuid %s: give one or two GPU ids, e.g. 0 or 0,1' % opt.gpuid)
    print("use GPU:", opt.gpuid, "GPUs_count", device_count, flush=True)
    export_gpu_id(opt.gpuid)


def adjust_learning_rate(opt, optimizer, epoch):
    """Decay the learning rate by 10 every lr_update epochs."""
    lr = opt.learning_rate * (0.1 ** (epoch // opt.lr_update))
    log("learning rate %f in epoch %d" % (lr, epoch))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr


def save_epoch_checkpoint(state, is_best, prefix, tries=15):
    """model.pth.tar every epoch (atomic), copied to model_best.pth.tar when best (upstream :116-136,
    which also retried a failing save up to 15 times)."""
    path = os.path.join(prefix, 'model.pth.tar')
    while True:
        try:
            save_atomic(state, path)
            break
        except OSError as error:
            tries -= 1
            log('model save model.pth.tar failed, remaining {} trials'.format(tries))
            if not tries:
                raise InputError('%s: cannot be written (%s)' % (path, error.strerror or error)) from None
            time.sleep(1)
    if is_best:
        message = "\n--------save best model at epoch %d---------\n" % (state["epoch"] - 1)
        log(message)
        logging_func(os.path.join(prefix, "performance.log"), message)  # quirk: model_name dir
        copy_to_best(path, os.path.join(prefix, 'model_best.pth.tar'))


def load_vocab(opt):
    vocab_file = os.path.join(opt.vocab_path, '%s_vocab.json' % opt.data_name)
    if not os.path.isfile(vocab_file):
        raise InputError('%s: vocabulary file not found (expected <vocab_path>/<data_name>_vocab.json; '
                         'build one with `python m2hse/vocab.py`)' % vocab_file)
    return data.read_vocab(vocab_file), vocab_file


def prepare_outputs(opt):
    """Fail before any data is read if the checkpoint or log folder cannot be written."""
    check_writable(os.path.join(opt.model_name, 'model.pth.tar'), 'checkpoint')
    check_writable(os.path.join(opt.logger_name, 'loss.log'), 'training log')
    for folder in {opt.model_name, opt.logger_name}:
        for leftover in cleanup_stale_tmp(folder):
            print('removed %s (left by an interrupted write)' % leftover)


def build_loaders(level, vocab, opt, info, base_seed):
    dpath = data.split_dir(opt)
    for split in ('train', 'dev'):  # check the whole layout before loading anything
        data.check_split(dpath, split, level, opt.cnn_dim, opt.bovw_dim)
    train_set = data.PrecompDataset(dpath, 'train', vocab, level, opt.cnn_dim, opt.bovw_dim)
    sampler = distributed_sampler(train_set, shuffle=True, seed=base_seed)
    generator = torch.Generator()
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=opt.batch_size, shuffle=sampler is None, sampler=sampler,
        num_workers=opt.workers, collate_fn=data.collate_fn, generator=generator,
        pin_memory=info.device.type == 'cuda')
    val_loader = data.get_precomp_loader(dpath, 'dev', vocab, opt.batch_size, False, level,
                                         opt.cnn_dim, opt.bovw_dim) if info.is_main else None
    return train_loader, val_loader, sampler, generator


def run_eval(level, model, val_loader, opt, split='dev'):
    result = evaluate(level, model, val_loader, opt, show_progress=not opt.no_progress)
    log_performance(opt, split, result)
    return result


def check_scores_finite(scores, epoch, step):
    """A NaN score makes every mining comparison false, so MSB returns 0 and learning silently
    stops; stop the run instead."""
    for name, s in zip(('S_P', 'S_A1', 'S_A2'), scores):
        if not bool(torch.isfinite(s).all()):
            raise NonFiniteError('non-finite similarity scores (%s) at epoch %d step %d; the run stops and '
                                 'nothing from this epoch is saved. Check the features for NaN/inf values '
                                 'or lower --learning_rate' % (name, epoch, step))


def train_one_epoch(level, epoch, model, train_loader, criteria, optimizer, scaler, opt, info):
    w1, w2 = loss_weights(level, opt)
    loss_file = os.path.join(opt.logger_name, "loss.log")
    run_time = 0
    n_batches = len(train_loader)
    bar = progress(train_loader, desc='epoch %d' % epoch, total=n_batches, unit='batch',
                   enabled=not opt.no_progress and info.is_main)
    for i, (cnns, captions, lengths, masks, ids, lab, bovws) in enumerate(bar):
        if opt.max_steps and i >= opt.max_steps:
            break
        start_time = time.time()
        model.train()
        optimizer.zero_grad()
        with torch.autograd.set_detect_anomaly(opt.detect_anomaly):
            with autocast(info.device, opt.amp):
                sim_P, sim_A1, sim_A2 = model(cnns.to(info.device), captions.to(info.device), lengths,
                                              bovws.to(info.device))
            if opt.amp:  # fp16 scores would change the mined pairs too much; the loss runs in fp32+
                sim_P, sim_A1, sim_A2 = (s if s.dtype == torch.float64 else s.float() for s in (sim_P, sim_A1, sim_A2))
            check_scores_finite((sim_P, sim_A1, sim_A2), epoch, i + 1)
            loss_P = criteria[0](sim_P, lab)
            loss_A1 = criteria[1](sim_A1, lab)
            loss_A2 = criteria[2](sim_A2, lab)
            loss = loss_P + w1 * loss_A1 + w2 * loss_A2
            loss_value = check_finite(loss.item(), 'epoch %d step %d' % (epoch, i + 1))
            scaler.scale(loss).backward()
        if opt.grad_clip > 0:
            scaler.unscale_(optimizer)
            clip_grad_norm_(model.parameters(), opt.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        run_time += time.time() - start_time
        if (i + 1) % opt.log_step == 0 and info.is_main:
            # quirk (train_*.py:98): the time is divided by 100 whatever log_step is
            line = "epoch: {0}; batch: {1}/{2}; loss: {3}; time: {4}\n".format(
                epoch, i + 1, n_batches, loss.data.item(), run_time / 100)
            logging_func(loss_file, line)
            log(line)
            run_time = 0
        if info.is_main:
            step = epoch * n_batches + i
            tb_logger.log_value('loss', loss_value, step=step)
            tb_logger.log_value('loss_P', loss_P.item(), step=step)
            tb_logger.log_value('loss_A1', loss_A1.item(), step=step)
            tb_logger.log_value('loss_A2', loss_A2.item(), step=step)
    return float(loss.item()) if n_batches else float('nan')


def restore(resume, path, core, optimizer, scaler):
    """Continue a run from its model.pth.tar: weights, Adam, GradScaler, RNG, epoch, best mAP_sum."""
    load_weights(core, resume['model'], path)
    if 'optimizer' in resume:
        optimizer.load_state_dict(resume['optimizer'])
    if resume.get('scaler'):
        scaler.load_state_dict(resume['scaler'])
    if 'rng' in resume:
        set_rng_state(resume['rng'])
    start_epoch, best_mAP_sum = int(resume['epoch']), float(resume['best_mAP_sum'])
    log("=> resumed from %s (epoch %d, best_mAP_sum %.4f)" % (path, start_epoch, best_mAP_sum))
    return start_epoch, best_mAP_sum


def end_of_epoch(level, epoch, core, val_loader, optimizer, scaler, opt, base_seed, fingerprint_, best):
    """Evaluate on dev, keep the best mAP_sum, save model.pth.tar (+ model_best.pth.tar)."""
    print("-------- performance at epoch: %d --------" % (epoch))
    result = run_eval(level, core, val_loader, opt)
    tb_logger.log_value('mAP_sum', result.mAP_sum, step=epoch)
    tb_logger.log_value('i2t_mAP', result.i2t_mAP, step=epoch)
    tb_logger.log_value('t2i_mAP', result.t2i_mAP, step=epoch)
    if not all_finite(core.state_dict()):
        raise NonFiniteError('NaN/inf weights after epoch %d; nothing was saved (the last complete '
                             'checkpoint in %s is kept). Lower --learning_rate or check the features'
                             % (epoch, opt.model_name))
    is_best = result.mAP_sum > best
    best = max(result.mAP_sum, best)
    save_epoch_checkpoint({
        'epoch': epoch + 1,
        'model': prefixed_state_dict(core),
        'best_mAP_sum': np.float64(best),
        'opt': opt,
        # port additions for a full --resume and checks at evaluation (upstream tools ignore them)
        'optimizer': optimizer.state_dict(),
        'scaler': scaler.state_dict() if opt.amp else None,
        'rng': rng_state(),
        'base_seed': base_seed,
        'vocab_fingerprint': fingerprint_,
    }, is_best, prefix=opt.model_name)
    return best


def main(level, argv=None, opt=None):
    """Train one subnetwork; `opt` is the parsed options (parsed from `argv` when not given)."""
    opt = opts.parse_opt(argv) if opt is None else opt
    if opt.gamma_1 == 0:
        raise InputError('--gamma_1 0: the MSB loss divides by gamma_1; give a non-zero value (README: 1)')
    setup_logging()
    print(opt)  # upstream's line
    distributed = int(os.environ.get('WORLD_SIZE', '1')) > 1
    apply_gpuid(opt, argv, distributed)
    info = init_distributed(opt.device)
    seed_everything(opt.seed, opt.deterministic)

    vocab, vocab_file = load_vocab(opt)
    opt.vocab_size = len(vocab)
    print_config(opt, 'resolved config')
    if info.is_main:
        prepare_outputs(opt)

    resume = load_model_checkpoint(opt.resume) if opt.resume else None
    if resume:
        check_vocabulary(opt.resume, resume, vocab, vocab_file)
    base_seed = resume['base_seed'] if resume and 'base_seed' in resume else \
        (opt.seed if opt.seed is not None else random.SystemRandom().randrange(2 ** 31))
    train_loader, val_loader, sampler, generator = build_loaders(level, vocab, opt, info, base_seed)

    core = build_model(level, opt).to(info.device)
    model = wrap_ddp(core, info)
    criteria = [MultiSpringBalanceLoss(opt=opt) for _ in range(3)]
    optimizer = torch.optim.Adam(core.parameters(), lr=opt.learning_rate)
    scaler = make_grad_scaler(info.device, opt.amp)
    start_epoch, best_mAP_sum = restore(resume, opt.resume, core, optimizer, scaler) if resume else (0, 0)

    if info.is_main:
        os.makedirs(opt.model_name, exist_ok=True)
        os.makedirs(opt.logger_name, exist_ok=True)  # upstream required it to exist (upstream train_*.py:57)
        tb_logger.configure(opt.logger_name, flush_secs=5)
        run_eval(level, core, val_loader, opt)  # upstream evaluates dev before training
    barrier()

    fingerprint_ = vocab_fingerprint(vocab)
    for epoch in range(start_epoch, opt.num_epochs):
        if info.is_main:
            logging_func(os.path.join(opt.logger_name, "performance.log"),
                         "\nepoch: %d, model name: %s \n" % (epoch, opt.model_name))
            log("model name: %s" % opt.model_name)
        adjust_learning_rate(opt, optimizer, epoch)
        generator.manual_seed(base_seed + epoch)  # shuffle order depends on (seed, epoch): resumable
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_one_epoch(level, epoch, model, train_loader, criteria, optimizer, scaler, opt, info)
        if info.is_main:
            best_mAP_sum = end_of_epoch(level, epoch, core, val_loader, optimizer, scaler, opt, base_seed,
                                        fingerprint_, best_mAP_sum)
        barrier()
    if info.is_main:
        tb_logger.close()
    cleanup_distributed()
    return best_mAP_sum
