"""Upstream's entry name for recall@K; the code lives in avas/recall_at_k.py (importable)."""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avas.recall_at_k import main
from common.errors import cli_main

if __name__ == '__main__':
    cli_main(main)
