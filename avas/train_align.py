"""Train the recall-stage ALIGN (upstream ships no training loop; every choice here is the port's,
documented in avas/README.md "Training").

Loss per step: CLIP loss of (image, POI-name/title) pairs with logit_scale multiplying the cosine
matrix (as align_model.py) + --mkg_weight * mean TransE margin loss of the AVAS MKG head on
in-batch triples (POI name, has_image, its image) vs (POI name, has_image, previous row's image).
Saves AVAS's {'epoch', 'min_loss', 'state_dict'} checkpoints that the recall script loads (plus
the vocab.txt fingerprint), all writes atomic; --resume continues exactly (RNG states saved).

    python avas/train_align.py --train_csv data/recall_train.csv --image_dir recall_train_images \
        --bert_path bert-base-chinese --save_dir runs/align
    torchrun --nproc_per_node 2 avas/train_align.py ...       # DDP (gloo on CPU, nccl on GPU)
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import logging
import math

from avas.options import ALIGN_MODEL_NAME as MODEL_NAME, add_common_args
from common.errors import InputError, cli_main
from common.logs import print_config, setup_logging
from common.safeio import check_writable_dir, cleanup_stale_tmp

log = logging.getLogger('avas')


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
    return add_common_args(p, 'a corrupt or missing training image is an error (default: skipped and counted)')


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    check_writable_dir(args.save_dir, '--save_dir')
    cleanup_stale_tmp(args.save_dir)
    # heavy imports wait until the arguments are parsed: --help stays fast
    import torch
    from avas.align_model import build_model
    from avas.data import AlignPairs, train_transform
    from avas.training import (align_loader, freeze_unused_align_params, recalibrate, restore_training,
                               save_align_epoch, train_align_epoch)
    from common import logger
    from common.runtime import cleanup_distributed, init_distributed, make_grad_scaler, seed_everything, wrap_ddp
    info = init_distributed(args.device)
    if info.is_main:
        print_config(args)
    seed_everything(None if args.seed is None else args.seed + info.rank, args.deterministic)
    show_progress = not args.no_progress and info.is_main
    dataset = AlignPairs(args.train_csv, args.image_dir, transform=train_transform() if args.aug else None,
                         image_size=args.image_size, strict=args.strict, show_progress=show_progress)
    if dataset.missing:
        print('WARNING: %d training images missing (skipped), e.g. %s' % (len(dataset.missing), dataset.missing[0][0]))
    loader, sampler, generator = align_loader(dataset, args.batch_size, args.num_workers, args.seed, args.train_csv)
    model = build_model(args.model_path, args.bert_path, args.bert_layers_num, with_mkg=True,
                        efficientnet_weights_path=args.efficientnet_weights_path,
                        init_bert_weights=args.init_bert_weights).to(info.device)
    freeze_unused_align_params(model, args.mkg_weight)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    scaler = make_grad_scaler(info.device, args.amp)
    start_epoch, step, min_loss = 0, 0, math.inf
    if args.resume:
        state = restore_training(args.resume, model, optimizer, scaler, generator, 'min_loss')
        start_epoch, step, min_loss = state['epoch'] + 1, state['step'], state['min_loss']
    ddp_model = wrap_ddp(model, info)
    if info.is_main:
        logger.configure(args.log_dir or os.path.join(args.save_dir, 'tb'))
    best_path, history = None, []
    for epoch in range(start_epoch, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        meters, step = train_align_epoch(ddp_model, model, loader, optimizer, scaler, info.device, epoch, step,
                                         args.mkg_weight, args.amp, args.max_steps, args.log_every, info.is_main,
                                         show_progress)
        if 'loss' not in meters.meters:  # --max_steps reached before this epoch
            break
        recalibrate(model, loader, args.recalibrate_bn, info.device)
        history.append({'epoch': epoch, 'loss': meters.meters['loss'].avg, 'steps': step})
        if info.is_main:
            min_loss, best_path = save_align_epoch(args.save_dir, args.model_name, model, optimizer, scaler, generator,
                                                   epoch, step, meters, min_loss, best_path)
        if args.max_steps and step >= args.max_steps:
            break
    if info.is_main:
        logger.close()
        log.info('done: %d steps, min epoch loss %.4f, best %s', step, min_loss, best_path)
    cleanup_distributed()
    if not history and start_epoch < args.epochs:
        raise InputError('0 training steps were run (--max_steps %d, step %d); nothing was trained or saved'
                         % (args.max_steps, step))
    return {'steps': step, 'min_loss': min_loss, 'best': best_path, 'history': history}


if __name__ == '__main__':
    cli_main(main)
