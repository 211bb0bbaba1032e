"""Maintenance scripts, run from the repository root.

    python -m scripts.api_docs            # regenerate docs/api.md from the docstrings
    python -m scripts.api_docs --check    # exit 1 when docs/api.md is out of date
"""
