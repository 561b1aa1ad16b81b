"""Scaling analysis (``madbench scaling``): analytic FLOPs (``flops``), model families and sizes
(``shapes``), the byte-level corpus (``corpus``: named and local-file corpora), the paper's recipe tables (``recipe``), IsoFLOP training runs (``runs``), scaling-law
fits (``fits``), state against perplexity (``state``), stored frontiers (``frontiers``), submission validation (``validate``) and the
MAD-score correlation (``correlate``). See docs/scaling.md."""
