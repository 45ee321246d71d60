"""avas: see avas/README.md."""
