"""The command-line face: ``python -m imgrec`` and the ``imgrec`` console script."""
