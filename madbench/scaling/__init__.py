"""Scaling analysis (``madbench scaling``): analytic FLOPs (``flops``), model families and sizes
(``shapes``), the byte-level corpus (``corpus``), IsoFLOP training runs (``runs``), scaling-law
fits (``fits``), stored frontiers (``frontiers``), submission validation (``validate``) and the
MAD-score correlation (``correlate``). See docs/scaling.md."""
