"""Training entry point (upstream train.py): train, validate on dev every epoch, keep the best.

    python train.py --data_name f30k_precomp --num_epochs 50 --lr_update 20
    python train.py --model SGRAF --module_name SAF ...          # plain SGRAF (or lhsc/sgraf/train.py)
    torchrun --nproc_per_node 2 train.py ...                     # DDP (gloo on CPU, nccl on GPU)

The loop itself is in lhsc/training.py (shared with lhsc/sgraf/train.py).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.errors import cli_main
from common.progress import add_progress_arg
from lhsc import opts


def main(argv=None):
    parser = add_progress_arg(opts.build_parser())
    opt = opts.parse_opt(argv, parser)
    opt.device_spec = opts.apply_device_flag(opt.device)
    from lhsc import training  # torch and the model: after parsing, so --help is fast
    return training.run(opt, progress_bars=not opt.no_progress)


if __name__ == "__main__":
    cli_main(main)
