"""hsl: see hsl/README.md."""
