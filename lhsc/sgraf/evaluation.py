"""SGRAF's evaluation entry point (Paranioar/SGRAF evaluation.py): `python evaluation.py` evaluates
SGRAF's SAF model_best on the test split (fold5=False), as its __main__ did; flags as lhsc/'s
evaluation.py (--model_path, --data_path, --split, --fold5, --ensemble SAF SGR, --out_json ...).
Refuses LHSC checkpoints (evaluate those with lhsc/evaluation.py).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.errors import cli_main
from common.progress import add_progress_arg
from lhsc.sgraf.opts import build_sgraf_eval_parser


def main(argv=None):
    args = add_progress_arg(build_sgraf_eval_parser()).parse_args(argv)
    from lhsc import evaluation  # torch and the model: after parsing, so --help is fast
    return evaluation.run(args, argv, architecture_required='SGRAF')


if __name__ == "__main__":
    cli_main(main)
