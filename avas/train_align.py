"""Train the recall-stage ALIGN (upstream ships no training loop; every choice here is the port's,
documented in avas/README.md "Training").

Loss per step: CLIP loss of (image, POI-name/title) pairs with logit_scale multiplying the cosine
matrix (as align_model.py) + --mkg_weight * mean TransE margin loss of the AVAS MKG head on
in-batch triples (POI name, has_image, its image) vs (POI name, has_image, previous row's image).
Saves AVAS's {'epoch', 'min_loss', 'state_dict'} checkpoints that the recall script loads.

    python avas/train_align.py --train_csv data/recall_train.csv --image_dir recall_train_images \
        --bert_path bert-base-chinese --save_dir runs/align
    torchrun --nproc_per_node 2 avas/train_align.py ...       # DDP (gloo on CPU, nccl on GPU)
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import math
import shutil
import time

import torch
from torch.utils.data import DataLoader

from avas.align_model import build_model, recalibrate_batchnorm
from avas.data import AlignPairs, collate_align, train_transform
from avas.tokenization import tokenize

MODEL_NAME = 'commodity_poi_mml_with_MKG'


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--train_csv', required=True, help='recall-format CSV: poi_id,poi_name,image_url,rank_number,...')
    p.add_argument('--image_dir', required=True, help='images named <poi_id>_<rank_number>.jpg')
    p.add_argument('--bert_path', default='bert-base-chinese', help='folder with config.json + vocab.txt')
    p.add_argument('--bert_layers_num', default=4, type=int)
    p.add_argument('--init_bert_weights', action='store_true', help='start BERT from <bert_path> weights')
    p.add_argument('--efficientnet_weights_path', default=None, help='local EfficientNet-b3 weights')
    p.add_argument('--model_path', default=None, help='start from an ALIGN checkpoint (align_model.pth)')
    p.add_argument('--batch_size', default=32, type=int, help='per process')
    p.add_argument('--lr', default=1e-4, type=float)
    p.add_argument('--weight_decay', default=0.0, type=float)
    p.add_argument('--epochs', default=10, type=int)
    p.add_argument('--max_steps', default=0, type=int, help='stop after this many steps (0 = no limit)')
    p.add_argument('--mkg_weight', default=1.0, type=float, help='weight of the MKG TransE loss (0 = CLIP only)')
    p.add_argument('--aug', default=0, type=int, help='1: rotation(5) + flip(0.3) as the ranking train mode')
    p.add_argument('--image_size', default=224, type=int, help='training resolution (upstream: 224)')
    p.add_argument('--recalibrate_bn', default=0, type=int,
                   help='before saving, re-estimate BN statistics over this many batches (0 = off)')
    p.add_argument('--save_dir', default='runs/align')
    p.add_argument('--model_name', default=MODEL_NAME)
    p.add_argument('--log_dir', default=None, help='TensorBoard folder (default <save_dir>/tb)')
    p.add_argument('--log_every', default=10, type=int)
    p.add_argument('--resume', default=None, help='<save_dir>/checkpoint_last.pth to continue from')
    p.add_argument('--num_workers', default=0, type=int)
    from common.runtime import add_runtime_args
    add_runtime_args(p)
    return p


def save_training_state(path, model, optimizer, scaler, epoch, step, min_loss):
    from common.checkpoint import save_checkpoint
    save_checkpoint({'epoch': epoch, 'step': step, 'min_loss': min_loss, 'state_dict': model.state_dict(),
                     'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict()}, path)


def main(argv=None):
    args = get_parser().parse_args(argv)
    from common import logger
    from common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from common.runtime import (autocast, cleanup_distributed, distributed_sampler, init_distributed,
                                make_generator, make_grad_scaler, seed_everything, wrap_ddp)
    info = init_distributed(args.device)
    seed_everything(None if args.seed is None else args.seed + info.rank, args.deterministic)
    try:
        dataset = AlignPairs(args.train_csv, args.image_dir, transform=train_transform() if args.aug else None,
                             image_size=args.image_size)
        model = build_model(args.model_path, args.bert_path, args.bert_layers_num, with_mkg=True,
                            efficientnet_weights_path=args.efficientnet_weights_path,
                            init_bert_weights=args.init_bert_weights)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit('error: %s' % err)
    if dataset.missing and info.is_main:
        print('WARNING: %d training images missing (skipped), e.g. %s' % (len(dataset.missing), dataset.missing[0][0]))
    device = info.device
    model.to(device)
    # parameters no loss touches stay fixed (and DDP needs every trained parameter to get a grad):
    # the BERT pooler (upstream uses the CLS hidden state) and, without MKG loss, the MKG head
    unused = list(model.text_model.pooler.parameters()) if model.text_model.pooler is not None else []
    if args.mkg_weight <= 0:
        unused += list(model.relations_emb.parameters()) + list(model.linear_relation.parameters())
    for param in unused:
        param.requires_grad_(False)
    sampler = distributed_sampler(dataset, shuffle=True, seed=args.seed or 0)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.num_workers, collate_fn=collate_align, drop_last=len(dataset) > args.batch_size,
                        generator=make_generator(args.seed))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    scaler = make_grad_scaler(device, args.amp)
    start_epoch, step, min_loss = 0, 0, math.inf
    if args.resume:
        try:
            state = load_checkpoint(args.resume)
        except CheckpointError as err:
            raise SystemExit('error: %s' % err)
        model.load_state_dict(state['state_dict'])
        optimizer.load_state_dict(state['optimizer'])
        scaler.load_state_dict(state['scaler'])
        start_epoch, step, min_loss = state['epoch'] + 1, state['step'], state['min_loss']
        print('resumed from %s (epoch %d, step %d)' % (args.resume, state['epoch'], step))
    ddp_model = wrap_ddp(model, info)
    os.makedirs(args.save_dir, exist_ok=True)
    if info.is_main:
        logger.configure(args.log_dir or os.path.join(args.save_dir, 'tb'))
    mkg = 'in_batch' if args.mkg_weight > 0 else None
    epoch, best_path, history = start_epoch - 1, None, []
    for epoch in range(start_epoch, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        ddp_model.train()
        meters = logger.LogCollector()
        for images, texts in loader:
            if args.max_steps and step >= args.max_steps:
                break
            start = time.time()
            images, text = images.to(device), tokenize(model.tokenizer, texts, device)
            with autocast(device, args.amp):
                out = ddp_model(images, text, mkg=mkg)
                loss_clip, loss_mkg = (out[0], out[1].mean()) if mkg else (out, torch.zeros((), device=device))
                loss = loss_clip + args.mkg_weight * loss_mkg
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            for k, v in (('loss', loss), ('loss_clip', loss_clip), ('loss_mkg', loss_mkg)):
                meters.update(k, v.item(), images.shape[0])
            if info.is_main:
                meters.tb_log(logger, prefix='train/', step=step)
                logger.log_value('train/logit_scale', model.logit_scale.item(), step)
                if step % args.log_every == 0 or step == 1:
                    print('epoch %d step %d  %s  (%.2fs/step)' % (epoch, step, meters, time.time() - start))
        if args.recalibrate_bn:
            batches = (b[0] for _, b in zip(range(args.recalibrate_bn), loader))
            recalibrate_batchnorm(model, batches, device)
        epoch_loss = meters.meters['loss'].avg if 'loss' in meters.meters else math.inf
        history.append({'epoch': epoch, 'loss': epoch_loss, 'steps': step})
        if info.is_main:
            if epoch_loss < min_loss:
                min_loss = epoch_loss
                best_path = os.path.join(args.save_dir, '%s_iteration_%d_%.4f_%.3f_%.3f.pth' % (
                    args.model_name, step, epoch_loss, meters.meters['loss_clip'].avg, meters.meters['loss_mkg'].avg))
                save_checkpoint({'epoch': epoch, 'min_loss': min_loss, 'state_dict': model.state_dict()}, best_path)
                shutil.copyfile(best_path, os.path.join(args.save_dir, 'align_model.pth'))
                print('save model to', best_path)
            save_training_state(os.path.join(args.save_dir, 'checkpoint_last.pth'), model, optimizer, scaler,
                                epoch, step, min_loss)
        if args.max_steps and step >= args.max_steps:
            break
    if info.is_main:
        logger.close()
        print('done: %d steps, min epoch loss %.4f, best %s' % (step, min_loss, best_path))
    cleanup_distributed()
    return {'steps': step, 'min_loss': min_loss, 'best': best_path, 'history': history}


if __name__ == '__main__':
    main()
