"""m2hse: see m2hse/README.md."""
