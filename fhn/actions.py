"""The actions of scripts/run.py as library functions: device, seeding, then train / test /
an evaluation action of fhn.evaluation."""
import logging
import os

import torch

from common.errors import InputError
from common.runtime import (cleanup_distributed, distributed_sampler, init_distributed,
                            make_generator, seed_everything)
from fhn import evaluation as E
from fhn.data import get_dataloader
from fhn.model import get_net, one_hot, resolve_device
from fhn.train import FashionNetSolver

LOGGER = logging.getLogger("fhn")


def run_train(config, args):
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        spec = args.device or ("cuda" if config.gpus and torch.cuda.is_available() else "cpu")
        info = init_distributed(spec)
        device = info.device
    else:
        info = None
        device = resolve_device(config.gpus, args.device)
    if args.amp:
        config.solver_param.amp = True
    train_param = config.train_data_param or config.data_param
    val_param = config.test_data_param or config.data_param
    LOGGER.info("Data set for training: %s", train_param)
    train_loader = get_dataloader(train_param, generator=make_generator(args.seed))
    if distributed:
        sampler = distributed_sampler(train_loader.dataset, shuffle=train_param.shuffle,
                                      seed=args.seed or 0)
        train_loader = get_dataloader(train_param, sampler=sampler)
    LOGGER.info("Data set for validation: %s", val_param)
    val_loader = get_dataloader(val_param)
    if val_loader.num_users != train_loader.num_users:
        raise InputError("%s has %d users but %s has %d; train and validation splits must have "
                           "the same users" % (val_param.posi_fn, val_loader.num_users,
                                               train_param.posi_fn, train_loader.num_users))
    net = get_net(config, device)
    LOGGER.info("Initialize a solver for training.")
    LOGGER.info("Solver configuration: %s", config.solver_param)
    solver = FashionNetSolver(config.solver_param, net, train_loader, val_loader, device,
                              dist_info=info, use_visdom=not args.no_visdom,
                              show_progress=not args.no_progress)
    if config.resume:
        solver.resume(config.resume)
    solver.run()
    result = dict(best_loss=float(solver.best_loss), best_acc=float(solver.best_acc),
                  epochs=solver.last_epoch + 1)
    if distributed:
        cleanup_distributed()
    return result


def run_test(config, args):
    """Fork's `test` action: print one batch of the data loader."""
    loader = get_dataloader(config.data_param)
    for inputv in loader:
        items, uidx = inputv[0], inputv[-1]
        oh = one_hot(torch.as_tensor(uidx), config.net_param.num_users)
        print(len(items))
        print(items[0].shape)
        print(uidx)
        print(uidx.shape)
        print(oh)
        print(oh.shape)
        return dict(batch_size=int(uidx.numel()))
    return {}


def run_action(config, args):
    """Seed, pick the device, run args.action; returns the results dict for --out_json."""
    seed_everything(args.seed, args.deterministic)
    if args.action == "train":
        return run_train(config, args)
    if args.action == "test":
        return run_test(config, args)
    device = resolve_device(config.gpus, args.device)
    if args.amp:
        config.amp = True
    show = not args.no_progress
    if args.action == "evaluate-accuracy":
        return E.evaluate_accuracy(config, device, args.per_outfit, show)
    if args.action == "evaluate-rank":
        return E.evaluate_rank(config, device, args.per_outfit, show)
    if args.action == "fitb":
        return E.fitb(config, device, args.per_outfit, show)
    if args.action == "extract-features":
        return E.extract_features(config, device, show)
    return E.recommend(config, device, args.user, args.topk, args.export, args.candidates, show,
                       grid=args.grid)
