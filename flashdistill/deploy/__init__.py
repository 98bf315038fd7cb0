"""Deployment: T5-free and quantised exports of a student (``export.py``), the packed int6 format (``int6.py``),
and ``flashdistill bench`` (``bench.py``)."""
