"""Serving plane: exactly what the bento ships — the BentoML forecast service, its contract and feature cache.

Nothing here imports MLflow or Prefect (``tests/test_seams.py``); packaging lives in ``flows.packaging``.
"""
