"""Streamlit-only helpers: caches and small shared widgets. Logic lives in ``imgrec``."""
