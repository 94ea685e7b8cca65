"""Serving plane: the BentoML forecast service, its feature cache and the packaging of the champion model."""
