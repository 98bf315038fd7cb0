"""Deployment: T5-free and quantised exports of a student (``export.py``; the formats are
``pipelines/quantized.py`` and ``models/int6.py``) and ``flashdistill bench``."""
