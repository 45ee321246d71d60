"""Code shared by two or more of the paper ports: vocab, tokenisation, checkpoint I/O, logging,
metrics primitives, runtime (device/seed/AMP/DDP) and result files."""
