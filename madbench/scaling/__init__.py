"""Scaling analysis (``madbench scaling``): analytic FLOPs (``flops``), model families, attention
ratios and sizes (``shapes``), named and local-file corpora (``corpus``), the paper's lr and batch
tables (``recipe``), IsoFLOP run plans (``plan``), training and driving them (``runs``), the
runs table (``table``), scaling-law fits (``fits``), state against perplexity (``state``),
stored frontiers (``frontiers``), submission validation (``validate``) and the MAD-score
correlation (``correlate``). See docs/scaling.md."""
