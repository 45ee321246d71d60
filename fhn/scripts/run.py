#!/usr/bin/env python
"""Fashion Hash Net entry point: `run.py ACTION --cfg FILE` (upstream scripts/run.py).

Actions: train, fitb, evaluate-accuracy, evaluate-rank, extract-features, test
(fork), recommend (port). Paths in the YAML resolve against the working directory.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
from logging.config import dictConfig  # noqa: E402

LOGGER = logging.getLogger("fhn")
ACTIONS = ["train", "fitb", "evaluate-accuracy", "evaluate-rank", "extract-features", "test",
           "recommend"]


class UserError(Exception):
    """Bad configuration or missing input: printed as one line, exit status 2."""


def config_log(stream_level=None, file_level="INFO", log_file=None):
    """Stream + file logging in upstream's format (utils/__init__.py:config_log)."""
    if log_file is None:
        fd, log_file = tempfile.mkstemp()
        os.close(fd)
    folder = os.path.dirname(log_file)
    if folder and not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)  # upstream needs the folder to exist
    handler_level = {"level": stream_level} if stream_level else {}
    dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"simple": {
            "format": "[%(levelname)s] - %(asctime)s - [%(name)s.%(funcName)s:%(lineno)d]: %(message)s",
            "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {
            "stream": dict({"class": "logging.StreamHandler", "formatter": "simple"}, **handler_level),
            "file": {"class": "logging.FileHandler", "level": file_level, "formatter": "simple",
                     "filename": log_file},
        },
        "root": {"level": "DEBUG", "handlers": ["stream", "file"]},
    })
    for noisy in ("PIL", "matplotlib", "urllib3", "websocket", "visdom", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return log_file


def _key_line(path, keys):
    """1-based line of the nested key `keys` in the YAML file (None if not found)."""
    import yaml

    try:
        with open(path) as f:
            node = yaml.compose(f)
        for key in keys:
            for k, v in node.value:
                if k.value == key:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return None
        return line
    except Exception:  # noqa: BLE001
        return None


def load_config(path):
    import yaml

    from fhn.param import FashionParam

    if not path:
        raise UserError("--cfg FILE is required")
    if not os.path.isfile(path):
        raise UserError("config file not found: %s" % path)
    with open(path) as f:
        try:
            kwargs = yaml.load(f, Loader=yaml.FullLoader) or {}
        except yaml.YAMLError as err:
            raise UserError("%s: invalid YAML: %s" % (path, err))
    try:
        return FashionParam(**kwargs)
    except KeyError as err:
        from fhn.param import unknown_keys

        for where in unknown_keys(kwargs):
            line = _key_line(path, where)
            raise UserError("%s:%s: unknown key %s (%s)" % (
                path, line if line else "?", ".".join(where), str(err).strip('"')))
        raise UserError("%s: %s" % (path, str(err).strip('"')))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="Fashion Hash Net",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Fashion Hash Net Training Script
            --------------------------------
            Actions:
                1. train: train fashion net.
                2. evaluate: evaluate NDCG and accuracy.
                3. retrieval: retrieval for items.
                """),
    )
    parser.add_argument("action", help="|".join(sorted(ACTIONS)))
    parser.add_argument("--cfg", help="configuration file.")
    # port flags
    parser.add_argument("--out_json", default=None, help="write the metrics as JSON here")
    parser.add_argument("--per_outfit", action="store_true",
                        help="evaluate with upstream's per-outfit CNN passes instead of cached item codes")
    parser.add_argument("--no_visdom", action="store_true", help="train without visdom plots")
    parser.add_argument("--user", type=int, default=0, help="recommend: user id")
    parser.add_argument("--topk", type=int, default=10, help="recommend: number of outfits")
    parser.add_argument("--candidates", choices=["user", "all"], default="user",
                        help="recommend: the user's evaluate-rank outfits, or every outfit of the split")
    parser.add_argument("--export", default=None, help="recommend: write user/item codes (npz) here")
    from common.runtime import add_runtime_args
    add_runtime_args(parser, device_default=None)
    return parser


def run_train(config, args):
    from common.runtime import init_distributed, distributed_sampler, make_generator
    from fhn.data import get_dataloader
    from fhn.evaluation import get_net, resolve_device
    from fhn.train import FashionNetSolver

    if config.solver_param is None:
        raise UserError("train needs a solver_param section")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        spec = args.device or ("cuda" if config.gpus and __import__("torch").cuda.is_available() else "cpu")
        info = init_distributed(spec)
        device = info.device
    else:
        info = None
        device = resolve_device(config.gpus, args.device)
    if args.amp:
        config.solver_param.amp = True
    train_param = config.train_data_param or config.data_param
    val_param = config.test_data_param or config.data_param
    if train_param is None:
        raise UserError("train needs data_param or train_data_param/test_data_param")
    LOGGER.info("Data set for training: %s", train_param)
    train_loader = get_dataloader(train_param, generator=make_generator(args.seed))
    if distributed:
        sampler = distributed_sampler(train_loader.dataset, shuffle=train_param.shuffle,
                                      seed=args.seed or 0)
        train_loader = get_dataloader(train_param, sampler=sampler)
    LOGGER.info("Data set for validation: %s", val_param)
    val_loader = get_dataloader(val_param)
    assert val_loader.num_users == train_loader.num_users
    net = get_net(config, device)
    LOGGER.info("Initialize a solver for training.")
    LOGGER.info("Solver configuration: %s", config.solver_param)
    solver = FashionNetSolver(config.solver_param, net, train_loader, val_loader, device,
                              dist_info=info, use_visdom=not args.no_visdom)
    if config.resume:
        solver.resume(config.resume)
    solver.run()
    result = dict(best_loss=float(solver.best_loss), best_acc=float(solver.best_acc),
                  epochs=solver.last_epoch + 1)
    if distributed:
        from common.runtime import cleanup_distributed
        cleanup_distributed()
    return result


def run_test(config, args):
    """Fork's `test` action: print one batch of the data loader."""
    import torch
    from fhn.data import get_dataloader
    from fhn.model import one_hot

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


def dispatch(config, args):
    from fhn import evaluation as E

    if args.action == "train":
        return run_train(config, args)
    if args.action == "test":
        return run_test(config, args)
    if config.net_param is None:
        raise UserError("%s needs a net_param section" % args.action)
    device = E.resolve_device(config.gpus, args.device)
    if args.amp:
        config.amp = True
    if args.action == "evaluate-accuracy":
        return E.evaluate_accuracy(config, device, args.per_outfit)
    if args.action == "evaluate-rank":
        return E.evaluate_rank(config, device, args.per_outfit)
    if args.action == "fitb":
        if config.fitb_data_param is None:
            raise UserError("fitb needs a fitb_data_param section")
        return E.fitb(config, device, args.per_outfit)
    if args.action == "extract-features":
        if not config.feature_file:
            raise UserError("extract-features needs feature_file")
        return E.extract_features(config, device)
    return E.recommend(config, device, args.user, args.topk, args.export, args.candidates)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action not in ACTIONS:
        print("Action %s is not in %s" % (args.action, "|".join(ACTIONS)), file=sys.stderr)
        return 1
    from common.checkpoint import CheckpointError
    from common.runtime import seed_everything
    from fhn.backbones import WeightsError
    from fhn.data import DataError

    try:
        config = load_config(args.cfg)
        logfile = config_log(stream_level=config.log_level, log_file=config.log_file)
        LOGGER.info("Logging to file %s", logfile)
        LOGGER.info("Fashion param : %s", config)
        seed_everything(args.seed, args.deterministic)
        results = dispatch(config, args)
    except (UserError, DataError, WeightsError, CheckpointError, FileNotFoundError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    if args.out_json and results is not None:
        from common.results import write_results

        data = config.data_param or config.fitb_data_param or config.train_data_param
        write_results(args.out_json, results, "fhn",
                      argv=sys.argv if argv is None else ["run.py"] + list(argv),
                      seed=args.seed, checkpoint=config.load_trained,
                      data_path=data.data_root if data is not None else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
