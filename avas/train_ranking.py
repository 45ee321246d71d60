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
import time

import torch

from avas.data import train_transform
from avas.local_eval_test import (add_port_args, add_upstream_args, build_ranking_model, make_loader,
                                  split_index_files)
from avas.model_local import MODEL_NAME, PairScorer


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_upstream_args(p)
    p.add_argument('--save_dir', default='runs/ranking')
    p.add_argument('--model_name', default=MODEL_NAME)
    p.add_argument('--log_dir', default=None, help='TensorBoard folder (default <save_dir>/tb)')
    p.add_argument('--max_steps', default=0, type=int, help='stop after this many steps (0 = no limit)')
    p.add_argument('--image_size', default=224, type=int, help='training resolution (upstream: 224)')
    p.add_argument('--resume', default=None, help='<save_dir>/checkpoint_last.pth to continue from')
    add_port_args(p)
    p.set_defaults(ranking_ckpt='')  # training starts from align_model.pth unless one is given
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    from avas.data import load_poi_tables
    from avas.evaluation import evaluate_pairs, pair_text_features
    from avas.loss import pair_softmax, rank_sigmoid_loss
    from common import logger
    from common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from common.runtime import (autocast, barrier, cleanup_distributed, distributed_sampler, init_distributed,
                                make_generator, make_grad_scaler, seed_everything, wrap_ddp)
    info = init_distributed(args.device)
    seed_everything(1 if args.seed is None else args.seed, args.deterministic)
    device = info.device
    train_file, val_file, _ = split_index_files(args.index_files)
    try:
        poi_tables = load_poi_tables(args.poi_tables, args.use_norm_vector)
        model = build_ranking_model(args, device, args.ranking_ckpt or None)
        from avas.data import RankingPairs
        train_set = RankingPairs(train_file, args.image_root, poi_tables,
                                 transform=train_transform() if args.aug else None,
                                 image_size=args.image_size)
        val_loader = make_loader(val_file, args, poi_tables)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit('error: %s' % err)
    sampler = distributed_sampler(train_set, shuffle=True, seed=args.seed or 0)
    from torch.utils.data import DataLoader
    from avas.data import collate_pairs
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                              num_workers=args.num_workers, collate_fn=collate_pairs,
                              generator=make_generator(args.seed))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    scaler = make_grad_scaler(device, args.amp)
    start_epoch, step, best_acc, best_path = 0, 0, -1.0, None
    if args.resume:
        try:
            state = load_checkpoint(args.resume)
        except CheckpointError as err:
            raise SystemExit('error: %s' % err)
        model.load_state_dict(state['state_dict'])
        optimizer.load_state_dict(state['optimizer'])
        scaler.load_state_dict(state['scaler'])
        start_epoch, step, best_acc, best_path = state['epoch'] + 1, state['step'], state['best_acc'], state['best_path']
        print('resumed from %s (epoch %d, step %d, best acc %.4f)' % (args.resume, state['epoch'], step, best_acc))
    scorer = wrap_ddp(PairScorer(model), info)
    os.makedirs(args.save_dir, exist_ok=True)
    if info.is_main:
        logger.configure(args.log_dir or os.path.join(args.save_dir, 'tb'))
    history = []
    for epoch in range(start_epoch, args.epoch):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        if args.freeze:  # port choice: a frozen ALIGN stays in eval mode (no BN drift, no dropout)
            model.align_model.eval()
        meters, n_dropped, start = logger.LogCollector(), 0, time.time()
        for batch, dropped in train_loader:
            n_dropped += len(dropped)
            if batch is None:
                continue
            if args.max_steps and step >= args.max_steps:
                break
            with torch.no_grad():  # upstream computes text features detached, inside the loader
                pois_feature = pair_text_features(model.align_model, batch['text'], device, model.use_norm,
                                                  args.text_batch_size)
            with autocast(device, args.amp):
                s1, s2 = scorer(batch['img_1'].to(device), batch['img_2'].to(device), pois_feature,
                                batch['mean_poi_img_vec'].to(device), batch['poi_text_vec'].to(device),
                                batch['poi_len'].to(device))
            s1, s2 = s1.float(), s2.float()
            if args.softmax:
                s1, s2 = pair_softmax(s1, s2)
            loss = rank_sigmoid_loss(s1, s2, batch['label'].to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            meters.update('loss', loss.item(), len(batch['text']))
            if info.is_main:
                logger.log_value('train/loss', loss.item(), step)
                if step % args.eval_per_step == 0 or step == 1:
                    print('epoch %d step %d  %s' % (epoch, step, meters))
        if n_dropped:
            print('WARNING: %d train pairs dropped this epoch (missing/unreadable images or bad lines)' % n_dropped)
        if info.is_main:
            result = evaluate_pairs(model, val_loader, device, softmax=args.softmax, text_batch_size=args.text_batch_size,
                                    verbose=bool(args.log), amp=args.amp)
            acc = result['dev_accuracy']
            train_loss = meters.meters['loss'].avg if 'loss' in meters.meters else float('nan')
            print('EPOCH: {:>6},  Train Loss: {:.4f},  Dev Loss: {:.4f},  Dev accuracy: {:.6f}, Time: {:.1f}s'.format(
                epoch, train_loss, result['dev_loss'], acc, time.time() - start))
            logger.log_value('val/dev_accuracy', acc, epoch)
            logger.log_value('val/dev_loss', result['dev_loss'], epoch)
            history.append({'epoch': epoch, 'train_loss': train_loss, 'dev_loss': result['dev_loss'], 'dev_accuracy': acc})
            if acc > best_acc:
                best_acc = acc
                best_path = os.path.join(args.save_dir, '%s_%03d_%.4f.ckpt' % (args.model_name, epoch, acc))
                save_checkpoint(model.state_dict(), best_path)
                print('save best model to', best_path)
            save_checkpoint({'epoch': epoch, 'step': step, 'best_acc': best_acc, 'best_path': best_path,
                             'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(),
                             'scaler': scaler.state_dict()}, os.path.join(args.save_dir, 'checkpoint_last.pth'))
        barrier()
        if args.max_steps and step >= args.max_steps:
            break
    if info.is_main:
        logger.close()
        print('done: %d steps, best dev accuracy %.4f (%s)' % (step, best_acc, best_path))
    cleanup_distributed()
    return {'steps': step, 'best_acc': best_acc, 'best_path': best_path, 'history': history}


if __name__ == '__main__':
    main()
