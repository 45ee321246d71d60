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
import textwrap  # noqa: E402

from common.errors import InputError, cli_main  # noqa: E402
from common.logs import print_config  # noqa: E402
from common.progress import add_progress_arg  # noqa: E402
from common.results import write_results  # noqa: E402
from common.runtime_args import add_runtime_args  # noqa: E402
from common.safeio import check_writable, check_writable_dir, cleanup_stale_tmp  # noqa: E402
from fhn.runconfig import UserError, config_log, load_config  # noqa: E402,F401  (re-exported)

LOGGER = logging.getLogger("fhn")
ACTIONS = ["train", "fitb", "evaluate-accuracy", "evaluate-rank", "extract-features", "test",
           "recommend"]


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
    parser.add_argument("--user", "--query", dest="user", type=int, default=0,
                        help="recommend: user id (--query: the name shared with the other papers' predict.py)")
    parser.add_argument("--topk", "--top_k", dest="topk", type=int, default=10, help="recommend: number of outfits")
    parser.add_argument("--checkpoint", default=None,
                        help="evaluation actions: use this checkpoint instead of the config's load_trained")
    parser.add_argument("--candidates", choices=["user", "all"], default="user",
                        help="recommend: the user's evaluate-rank outfits, or every outfit of the split")
    parser.add_argument("--export", default=None, help="recommend: write user/item codes (npz) here")
    parser.add_argument("--grid", default=None,
                        help="recommend: draw the recommended outfits (top, bottom, shoes) into this PNG")
    add_runtime_args(parser, device_default=None)  # None: the config's gpus decide
    parser.add_argument("--strict", action="store_true",
                        help="an outfit with a missing or corrupt image is an error (default: left out and counted)")
    add_progress_arg(parser)
    return parser


def data_params(config):
    """Every data section of the config (the ColdStart big/small sets included)."""
    params = [config.data_param, config.train_data_param, config.test_data_param,
              config.fitb_data_param]
    if config.net_param is not None:
        params += [config.net_param.big_data_param, config.net_param.small_data_param]
    return [p for p in params if p is not None and hasattr(p, "strict_images")]


def output_files(config, args):
    """(files, folders) this action writes: checked writable before any work starts."""
    files = [args.out_json, config.log_file]
    folders = []
    if args.action == "train" and config.solver_param is not None:
        files += [config.solver_param.checkpoints + suffix
                  for suffix in ("_latest.net", "_best.net", "_latest.solver")]
    elif args.action in ("evaluate-accuracy", "evaluate-rank", "fitb") and config.result_file:
        rf = config.result_file
        files.append(rf if rf.endswith(".npz") else rf + ".npz")
        if args.action == "evaluate-rank" and config.result_dir:
            folders.append(config.result_dir)
    elif args.action == "extract-features":
        files.append(config.feature_file)
    elif args.action == "recommend":
        files += [args.export, args.grid]
    return [f for f in files if f], folders


def check_outputs(config, args):
    files, folders = output_files(config, args)
    for path in files:
        cleanup_stale_tmp(path)
        check_writable(path, "output of %s" % args.action)
    for folder in folders:
        check_writable_dir(folder, "result_dir")
    if args.grid and not args.grid.lower().endswith(".png"):
        raise UserError("--grid %s: the outfit grid is a PNG; give a path ending in .png" % args.grid)
    if args.topk < 1:
        raise UserError("--topk %d: must be at least 1" % args.topk)


def check_sections(config, action):
    if action == "train" and config.solver_param is None:
        raise UserError("train needs a solver_param section")
    if action == "train" and (config.train_data_param or config.data_param) is None:
        raise UserError("train needs data_param or train_data_param/test_data_param")
    if action != "train" and config.net_param is None:
        raise UserError("%s needs a net_param section" % action)
    if action == "fitb" and config.fitb_data_param is None:
        raise UserError("fitb needs a fitb_data_param section")
    if action in ("evaluate-accuracy", "evaluate-rank", "extract-features", "recommend", "test") \
            and config.data_param is None:
        raise UserError("%s needs a data_param section" % action)
    if action == "extract-features" and not config.feature_file:
        raise UserError("extract-features needs feature_file")


def dispatch(config, args):
    # torch and the net are imported here, after parsing, so that --help stays fast
    from fhn import actions

    return actions.run_action(config, args)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action not in ACTIONS:
        print("Action %s is not in %s" % (args.action, "|".join(ACTIONS)), file=sys.stderr)
        return 1
    try:
        config = load_config(args.cfg)
        check_sections(config, args.action)
        if args.checkpoint:
            config.load_trained = args.checkpoint
        if args.strict:
            for param in data_params(config):
                param.strict_images = True
        check_outputs(config, args)
        logfile = config_log(stream_level=config.log_level, log_file=config.log_file)
        LOGGER.info("Logging to file %s", logfile)
        LOGGER.info("Fashion param : %s", config)
        print_config(vars(args), title="run.py flags", out=sys.stderr)
        results = dispatch(config, args)
    except InputError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    except Exception as err:  # checkpoint refusals are input faults too (named by class)
        if "CheckpointError" not in {c.__name__ for c in type(err).__mro__}:
            raise
        print("error: %s" % err, file=sys.stderr)
        return 2
    if args.out_json and results is not None:
        data = config.data_param or config.fitb_data_param or config.train_data_param
        write_results(args.out_json, results, "fhn",
                      argv=sys.argv if argv is None else ["run.py"] + list(argv),
                      seed=args.seed, checkpoint=config.load_trained,
                      data_path=data.data_root if data is not None else None)
    return 0


if __name__ == "__main__":
    cli_main(main)
