"""The training loop shared by train_global.py and train_local.py (upstream train_*.py, which are
identical apart from the model, the evaluation function and the alpha/beta loss weights)."""
import os
import random
import sys
import time

import numpy as np
import torch
from torch.nn.utils.clip_grad import clip_grad_norm_

from common import logger as tb_logger
from common.checkpoint import CheckpointError, atomic_open, load_checkpoint, save_checkpoint
from common.runtime import (autocast, barrier, cleanup_distributed, distributed_sampler, init_distributed,
                            make_grad_scaler, seed_everything, wrap_ddp)
from common.vocab import Vocabulary, deserialize_vocab
from m2hse import data_provider as data
from m2hse import opts
from m2hse.evaluation import evaluate, log_performance, logging_func
from m2hse.model import MultiSpringBalanceLoss, build_model

UPSTREAM_ALIASES = {'vocab.Vocabulary': Vocabulary}


def loss_weights(level, opt):
    """Global uses alpha_1/alpha_2, local beta_1/beta_2 (the other pair is declared but unused)."""
    return (opt.alpha_1, opt.alpha_2) if level == 'global' else (opt.beta_1, opt.beta_2)


def prefixed_state_dict(model):
    """Upstream saved nn.DataParallel(model).state_dict(): every key starts with 'module.'."""
    return {'module.' + k: v for k, v in model.state_dict().items()}


def strip_module_prefix(state_dict):
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}


def load_weights(model, state_dict, path):
    """Strict load of (possibly 'module.'-prefixed) weights; a mismatch is explained, not traced."""
    try:
        model.load_state_dict(strip_module_prefix(state_dict))
    except RuntimeError as err:
        detail = ' '.join(str(err).split())[:600]
        raise SystemExit('%s does not fit the model built from its options and this vocabulary '
                         '(different --vocab_path, embed_size or feature dims?): %s' % (path, detail))


def load_model_checkpoint(path):
    """Load an upstream or port checkpoint (pickled opts, numpy scalars) without unsafe unpickling."""
    try:
        return load_checkpoint(path, aliases=UPSTREAM_ALIASES)
    except CheckpointError as err:
        raise SystemExit(str(err))


def apply_gpuid(opt, argv, distributed):
    """Upstream exported --gpuid as CUDA_VISIBLE_DEVICES unconditionally; we do it only when the flag
    is given explicitly and not under torchrun (where it would hide the other ranks' GPUs)."""
    argv = sys.argv[1:] if argv is None else argv
    if distributed or not any(a == '--gpuid' or a.startswith('--gpuid=') for a in argv):
        return
    device_count = len(str(opt.gpuid).split(","))
    assert device_count == 1 or device_count == 2
    print("use GPU:", opt.gpuid, "GPUs_count", device_count, flush=True)
    os.environ['CUDA_VISIBLE_DEVICES'] = str(opt.gpuid)


def adjust_learning_rate(opt, optimizer, epoch):
    """Decay the learning rate by 10 every lr_update epochs."""
    lr = opt.learning_rate * (0.1 ** (epoch // opt.lr_update))
    print("learning rate %f in epoch %d" % (lr, epoch))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr


def rng_state():
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_epoch_checkpoint(state, is_best, prefix, tries=15):
    """model.pth.tar every epoch (atomic), copied to model_best.pth.tar when best (upstream :116-136,
    which also retried a failing save up to 15 times)."""
    while True:
        try:
            save_checkpoint(state, os.path.join(prefix, 'model.pth.tar'))
            break
        except OSError as error:
            tries -= 1
            print('model save model.pth.tar failed, remaining {} trials'.format(tries), flush=True)
            if not tries:
                raise error
            time.sleep(1)
    if is_best:
        message = "\n--------save best model at epoch %d---------\n" % (state["epoch"] - 1)
        print(message, flush=True)
        logging_func(os.path.join(prefix, "performance.log"), message)  # quirk: model_name dir
        with open(os.path.join(prefix, 'model.pth.tar'), 'rb') as src, \
                atomic_open(os.path.join(prefix, 'model_best.pth.tar'), 'wb') as dst:
            dst.write(src.read())


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
    result = evaluate(level, model, val_loader, opt)
    log_performance(opt, split, result)
    return result


def train_one_epoch(level, epoch, model, train_loader, criteria, optimizer, scaler, opt, info):
    w1, w2 = loss_weights(level, opt)
    loss_file = os.path.join(opt.logger_name, "loss.log")
    run_time = 0
    n_batches = len(train_loader)
    for i, (cnns, captions, lengths, masks, ids, lab, bovws) in enumerate(train_loader):
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
            loss_P = criteria[0](sim_P, lab)
            loss_A1 = criteria[1](sim_A1, lab)
            loss_A2 = criteria[2](sim_A2, lab)
            loss = loss_P + w1 * loss_A1 + w2 * loss_A2
            scaler.scale(loss).backward()
        if opt.grad_clip > 0:
            scaler.unscale_(optimizer)
            clip_grad_norm_(model.parameters(), opt.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        run_time += time.time() - start_time
        if (i + 1) % opt.log_step == 0 and info.is_main:
            # quirk (train_*.py:98): the time is divided by 100 whatever log_step is
            log = "epoch: {0}; batch: {1}/{2}; loss: {3}; time: {4}\n".format(
                epoch, i + 1, n_batches, loss.data.item(), run_time / 100)
            logging_func(loss_file, log)
            print(log, flush=True)
            run_time = 0
        if info.is_main:
            step = epoch * n_batches + i
            tb_logger.log_value('loss', loss.item(), step=step)
            tb_logger.log_value('loss_P', loss_P.item(), step=step)
            tb_logger.log_value('loss_A1', loss_A1.item(), step=step)
            tb_logger.log_value('loss_A2', loss_A2.item(), step=step)
    return float(loss.item()) if n_batches else float('nan')


def main(level, argv=None):
    opt = opts.parse_opt(argv)
    print(opt)
    distributed = int(os.environ.get('WORLD_SIZE', '1')) > 1
    apply_gpuid(opt, argv, distributed)
    info = init_distributed(opt.device)
    seed_everything(opt.seed, opt.deterministic)

    vocab_file = os.path.join(opt.vocab_path, '%s_vocab.json' % opt.data_name)
    if not os.path.isfile(vocab_file):
        raise SystemExit('vocabulary file not found: %s (expected <vocab_path>/<data_name>_vocab.json; '
                         'build one with `python m2hse/vocab.py`)' % vocab_file)
    vocab = deserialize_vocab(vocab_file)
    opt.vocab_size = len(vocab)

    resume = load_model_checkpoint(opt.resume) if opt.resume else None
    base_seed = resume['base_seed'] if resume and 'base_seed' in resume else \
        (opt.seed if opt.seed is not None else random.SystemRandom().randrange(2 ** 31))
    try:
        train_loader, val_loader, sampler, generator = build_loaders(level, vocab, opt, info, base_seed)
    except data.DataLayoutError as err:
        raise SystemExit('data layout error: %s' % err)

    core = build_model(level, opt).to(info.device)
    model = wrap_ddp(core, info)
    criteria = [MultiSpringBalanceLoss(opt=opt) for _ in range(3)]
    optimizer = torch.optim.Adam(core.parameters(), lr=opt.learning_rate)
    scaler = make_grad_scaler(info.device, opt.amp)

    start_epoch, best_mAP_sum = 0, 0
    if resume:
        load_weights(core, resume['model'], opt.resume)
        if 'optimizer' in resume:
            optimizer.load_state_dict(resume['optimizer'])
        if resume.get('scaler'):
            scaler.load_state_dict(resume['scaler'])
        if 'rng' in resume:
            restore_rng_state(resume['rng'])
        start_epoch, best_mAP_sum = int(resume['epoch']), float(resume['best_mAP_sum'])
        print("=> resumed from %s (epoch %d, best_mAP_sum %.4f)" % (opt.resume, start_epoch, best_mAP_sum))

    if info.is_main:
        os.makedirs(opt.model_name, exist_ok=True)
        os.makedirs(opt.logger_name, exist_ok=True)  # upstream required it to exist (quirk 9.17)
        tb_logger.configure(opt.logger_name, flush_secs=5)
        run_eval(level, core, val_loader, opt)  # upstream evaluates dev before training
    barrier()

    for epoch in range(start_epoch, opt.num_epochs):
        if info.is_main:
            logging_func(os.path.join(opt.logger_name, "performance.log"),
                         "\nepoch: %d, model name: %s \n" % (epoch, opt.model_name))
            print("model name: ", opt.model_name, flush=True)
        adjust_learning_rate(opt, optimizer, epoch)
        generator.manual_seed(base_seed + epoch)  # shuffle order depends on (seed, epoch): resumable
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_one_epoch(level, epoch, model, train_loader, criteria, optimizer, scaler, opt, info)
        if info.is_main:
            print("-------- performance at epoch: %d --------" % (epoch))
            result = run_eval(level, core, val_loader, opt)
            mAP_sum = result['mAP_sum']
            tb_logger.log_value('mAP_sum', mAP_sum, step=epoch)
            tb_logger.log_value('i2t_mAP', result['i2t_mAP'], step=epoch)
            tb_logger.log_value('t2i_mAP', result['t2i_mAP'], step=epoch)
            is_best = mAP_sum > best_mAP_sum
            best_mAP_sum = max(mAP_sum, best_mAP_sum)
            save_epoch_checkpoint({
                'epoch': epoch + 1,
                'model': prefixed_state_dict(core),
                'best_mAP_sum': np.float64(best_mAP_sum),
                'opt': opt,
                # port additions for a full --resume (upstream tools ignore them)
                'optimizer': optimizer.state_dict(),
                'scaler': scaler.state_dict() if opt.amp else None,
                'rng': rng_state(),
                'base_seed': base_seed,
            }, is_best, prefix=opt.model_name)
        barrier()
    if info.is_main:
        tb_logger.close()
    cleanup_distributed()
    return best_mAP_sum
