"""Train the CTR ranking model (upstream ships only its evaluation; the loop is the port's, each
choice documented in avas/README.md "Training").

Per batch of train pairs: s1, s2 of both images -> RankNet BCE(sigmoid(s1 - s2), ctr_a > ctr_b);
Adam(lr=--lr) on the parameters that require grad (the ALIGN is frozen with --freeze 1, default);
upstream's train-mode augmentation (--aug 1); validation after every epoch with the evaluation of
local_eval_test.py; the best dev pairwise accuracy is saved as a bare state_dict named like the
release: <model_name>_<epoch:03d>_<acc:.4f>.ckpt.

    python avas/train_ranking.py --index_files train.csv,val.csv,unused --image_root oss_images \
        --align_ckpt align_model.pth --bert_path bert-base-chinese --poi_tables . --save_dir runs/rank
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import logging
import time

from avas.options import (RANKING_MODEL_NAME as MODEL_NAME, add_ranking_port_args, add_upstream_ranking_args,
                          split_index_files)
from common.errors import InputError, cli_main
from common.logs import print_config, setup_logging
from common.safeio import check_writable_dir, cleanup_stale_tmp

log = logging.getLogger('avas')


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_upstream_ranking_args(p)
    p.add_argument('--save_dir', default='runs/ranking')
    p.add_argument('--model_name', default=MODEL_NAME)
    p.add_argument('--log_dir', default=None, help='TensorBoard folder (default <save_dir>/tb)')
    p.add_argument('--max_steps', default=0, type=int, help='stop after this many steps (0 = no limit)')
    p.add_argument('--image_size', default=224, type=int, help='training resolution (upstream: 224)')
    p.add_argument('--resume', default=None, help='<save_dir>/checkpoint_last.pth to continue from')
    add_ranking_port_args(p)
    p.set_defaults(ranking_ckpt='')  # training starts from align_model.pth unless one is given
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    train_file, val_file, _ = split_index_files(args.index_files)
    check_writable_dir(args.save_dir, '--save_dir')
    cleanup_stale_tmp(args.save_dir)
    # heavy imports wait until the arguments are parsed: --help stays fast
    import torch
    from avas.data import RankingPairs, make_pair_loader, train_transform
    from avas.evaluation import evaluate_pairs
    from avas.model_local import PairScorer, build_ranking_model
    from avas.poi_tables import load_poi_tables
    from avas.training import restore_training, save_ranking_epoch, train_ranking_epoch
    from common import logger
    from common.runtime import (barrier, cleanup_distributed, distributed_sampler, init_distributed, make_generator,
                                make_grad_scaler, seed_everything, wrap_ddp)
    info = init_distributed(args.device)
    if info.is_main:
        print_config(args)
    seed_everything(1 if args.seed is None else args.seed, args.deterministic)
    device, show_progress = info.device, not args.no_progress and info.is_main
    poi_tables = load_poi_tables(args.poi_tables, args.use_norm_vector)
    model = build_ranking_model(args.align_ckpt, args.bert_path, device, args.ranking_ckpt or None,
                                args.use_norm_vector, args.freeze)
    train_set = RankingPairs(train_file, args.image_root, poi_tables, transform=train_transform() if args.aug else None,
                             image_size=args.image_size)
    n_bad = len(train_set.verify(args.strict, show_progress))  # up front: no crash or surprise mid-epoch
    if n_bad:
        print('WARNING: %d of %d train pairs dropped (missing/unreadable images or bad lines); --strict makes '
              'this an error' % (n_bad, n_bad + len(train_set)))
    if not len(train_set):
        raise InputError('%s: no usable train pair left (%d dropped); check --image_root' % (train_file, n_bad))
    val_loader = make_pair_loader(RankingPairs(val_file, args.image_root, poi_tables), args.batch_size, args.num_workers)
    sampler = distributed_sampler(train_set, shuffle=True, seed=args.seed or 0)
    generator = make_generator(args.seed)
    train_loader = make_pair_loader(train_set, args.batch_size, args.num_workers, shuffle=True, sampler=sampler,
                                    generator=generator)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    scaler = make_grad_scaler(device, args.amp)
    start_epoch, step, best_acc, best_path = 0, 0, -1.0, None
    if args.resume:
        state = restore_training(args.resume, model, optimizer, scaler, generator, 'best_acc', 'best_path')
        start_epoch, step, best_acc, best_path = state['epoch'] + 1, state['step'], state['best_acc'], state['best_path']
    scorer = wrap_ddp(PairScorer(model), info)
    if info.is_main:
        logger.configure(args.log_dir or os.path.join(args.save_dir, 'tb'))
    history = []
    for epoch in range(start_epoch, args.epoch):
        if sampler is not None:
            sampler.set_epoch(epoch)
        start = time.time()
        meters, step, n_dropped = train_ranking_epoch(
            scorer, model, train_loader, optimizer, scaler, device, epoch, step, args.softmax, args.freeze,
            args.text_batch_size, args.amp, args.max_steps, args.eval_per_step, info.is_main, show_progress)
        if n_dropped:
            print('WARNING: %d train pairs dropped this epoch (missing/unreadable images or bad lines)' % n_dropped)
        if 'loss' not in meters.meters:  # --max_steps reached before this epoch
            break
        if info.is_main:
            result = evaluate_pairs(model, val_loader, device, softmax=args.softmax, strict=args.strict,
                                    text_batch_size=args.text_batch_size, verbose=bool(args.log), amp=args.amp,
                                    show_progress=show_progress)
            train_loss = meters.meters['loss'].avg
            print('EPOCH: {:>6},  Train Loss: {:.4f},  Dev Loss: {:.4f},  Dev accuracy: {:.6f}, Time: {:.1f}s'.format(
                epoch, train_loss, result.dev_loss, result.dev_accuracy, time.time() - start))
            logger.log_value('val/dev_accuracy', result.dev_accuracy, step)
            logger.log_value('val/dev_loss', result.dev_loss, step)
            history.append({'epoch': epoch, 'train_loss': train_loss, 'dev_loss': result.dev_loss,
                            'dev_accuracy': result.dev_accuracy})
            best_acc, best_path = save_ranking_epoch(args.save_dir, args.model_name, model, optimizer, scaler,
                                                     generator, epoch, step, result.dev_accuracy, best_acc, best_path)
        barrier()
        if args.max_steps and step >= args.max_steps:
            break
    if info.is_main:
        logger.close()
        log.info('done: %d steps, best dev accuracy %.4f (%s)', step, best_acc, best_path)
    cleanup_distributed()
    if step == 0:
        raise InputError('0 training steps were run (--epoch %d, --max_steps %d); nothing was trained'
                         % (args.epoch, args.max_steps))
    return {'steps': step, 'best_acc': best_acc, 'best_path': best_path, 'history': history}


if __name__ == '__main__':
    cli_main(main)
