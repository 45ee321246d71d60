"""fhn: see fhn/README.md."""
