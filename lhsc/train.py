"""Training entry point (upstream train.py): train, validate on dev every epoch, keep the best.

    python train.py --data_name f30k_precomp --num_epochs 50 --lr_update 20
    python train.py --model SGRAF --module_name SAF ...          # plain SGRAF
    torchrun --nproc_per_node 2 train.py ...                     # DDP (gloo on CPU, nccl on GPU)
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glob
import logging
import re
import time

import torch

from common import logger as tb_logger
from common.checkpoint import CheckpointError, atomic_open, load_checkpoint, save_checkpoint as atomic_save
from common.logger import AverageMeter, LogCollector
from common.runtime import barrier, cleanup_distributed, init_distributed, seed_everything
from common.vocab import deserialize_vocab
from lhsc import data, opts
from lhsc.evaluation import encode_data, i2t, resolve_vocab_file, shard_attn_scores, t2i
from lhsc.model import architecture, build_model


def main(argv=None):
    opt = opts.parse_opt(argv)
    info = init_distributed(opts.apply_device_flag(opt.device))
    seed_everything(opt.seed, opt.deterministic)
    logging.basicConfig(format='%(asctime)s %(message)s', level=logging.INFO, force=True)
    if info.is_main:
        tb_logger.configure(opt.logger_name, flush_secs=5)

    vocab = deserialize_vocab(resolve_vocab_file(opt.vocab_path, opt.data_name))
    opt.vocab_size = len(vocab)
    try:
        train_loader, val_loader = data.get_loaders(opt.data_name, vocab, opt.batch_size, opt.workers,
                                                    opt, world_size=info.world_size)
    except data.DataError as err:
        raise SystemExit(str(err))

    try:
        model = build_model(opt, device=info.device, amp=opt.amp, dist_info=info)
    except ValueError as err:  # e.g. --embed_size not divisible by 4 (IM_GCN)
        raise SystemExit(str(err))
    model.step_seed = opt.seed or 0
    if info.distributed:
        broadcast_parameters(model)

    best_rsum, start_epoch = 0, 0
    if opt.resume:
        start_epoch, best_rsum = resume(opt, model)

    for epoch in range(start_epoch, opt.num_epochs):
        if info.is_main:
            print(opt.logger_name)
            print(opt.model_name)
        adjust_learning_rate(opt, model.optimizer, epoch)
        reseed_shuffle(train_loader, opt.seed, epoch)

        train(opt, train_loader, model, epoch, val_loader)
        r_sum = validate(opt, val_loader, model)

        is_best = r_sum > best_rsum
        best_rsum = max(r_sum, best_rsum)
        if info.is_main:
            os.makedirs(opt.model_name, exist_ok=True)  # upstream os.mkdir (quirk 19)
            save_checkpoint({
                'epoch': epoch + 1,
                'model': model.state_dict(),
                'best_rsum': best_rsum,
                'opt': opt,
                'Eiters': model.Eiters,
                'optimizer': model.optimizer.state_dict(),  # port additions, for --resume
                'rng_state': torch.get_rng_state(),
            }, is_best, filename='checkpoint_{}.pth.tar'.format(epoch), prefix=opt.model_name + '/')
        barrier()
    if info.is_main:
        tb_logger.close()
    cleanup_distributed()
    return best_rsum


def train(opt, train_loader, model, epoch, val_loader):
    batch_time = AverageMeter()
    data_time = AverageMeter()
    train_logger = LogCollector()
    main_process = model.dist_info is None or model.dist_info.is_main

    end = time.time()
    for i, train_data in enumerate(train_loader):
        model.train_start()
        data_time.update(time.time() - end)
        model.logger = train_logger
        model.train_emb(*train_data)
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
    """Atomic torch.save, then an atomic copy to model_best.pth.tar when best (upstream layout)."""
    path = prefix + filename
    atomic_save(state, path)
    if is_best:
        with open(path, 'rb') as src, atomic_open(prefix + 'model_best.pth.tar', 'wb') as dst:
            dst.write(src.read())


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


def resume(opt, model):
    """Restore model, optimizer, Eiters; returns (start_epoch, best_rsum)."""
    path = latest_checkpoint(opt.model_name) if opt.resume == 'auto' else opt.resume
    if path is None:
        print('--resume auto: no checkpoint_<epoch>.pth.tar in %s, starting from scratch' % opt.model_name)
        return 0, 0
    try:
        checkpoint = load_checkpoint(path, map_location='cpu')
    except CheckpointError as err:
        raise SystemExit(str(err))
    n_words = checkpoint['model'][1]['embed.weight'].shape[0]
    if n_words != opt.vocab_size:
        raise SystemExit('%s embeds %d words but the vocabulary has %d: resume with the vocabulary '
                         'it was trained with (--vocab_path)' % (path, n_words, opt.vocab_size))
    model.load_state_dict(checkpoint['model'])
    if 'optimizer' in checkpoint:
        model.optimizer.load_state_dict(checkpoint['optimizer'])
    else:
        print('%s has no optimizer state (an upstream checkpoint): Adam restarts from zero moments' % path)
    model.Eiters = checkpoint.get('Eiters', 0)
    if 'rng_state' in checkpoint:
        torch.set_rng_state(checkpoint['rng_state'])
    print("=> resumed from '{}' (epoch {}, best_rsum {})".format(path, checkpoint['epoch'],
                                                                 checkpoint.get('best_rsum', 0)))
    return checkpoint['epoch'], checkpoint.get('best_rsum', 0)


def broadcast_parameters(model):
    """Start every rank from rank 0's weights."""
    import torch.distributed as dist
    for enc in (model.img_enc, model.txt_enc, model.sim_enc):
        for tensor in list(enc.parameters()) + list(enc.buffers()):
            dist.broadcast(tensor.data, 0)


if __name__ == "__main__":
    main()
