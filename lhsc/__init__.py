"""lhsc: see lhsc/README.md."""
