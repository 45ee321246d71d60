"""SGRAF's training entry point (Paranioar/SGRAF train.py), with SGRAF's flags and defaults:

    python train.py --data_name f30k_precomp --num_epochs 40 --lr_update 30 --module_name SGR
    python train.py --data_name coco_precomp --num_epochs 20 --lr_update 10 --module_name SAF

Writes SGRAF checkpoints ({epoch, model, best_rsum, opt, Eiters} with SGRAF's opt, plus the port's
resume keys) with the training loop shared with lhsc/ (lhsc/training.py).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.errors import cli_main
from common.progress import add_progress_arg
from lhsc.opts import apply_device_flag
from lhsc.sgraf.opts import build_parser


def main(argv=None):
    opt = add_progress_arg(build_parser()).parse_args(argv)
    print(opt)
    opt.device_spec = apply_device_flag(opt.device)
    from lhsc import training  # torch and the model: after parsing, so --help is fast
    return training.run(opt, progress_bars=not opt.no_progress)


if __name__ == "__main__":
    cli_main(main)
