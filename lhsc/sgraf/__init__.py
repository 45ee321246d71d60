"""SGRAF's own entry scripts (Paranioar/SGRAF train.py, evaluation.py, opts.py) over lhsc's model code."""
