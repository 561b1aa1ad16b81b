"""Accuracy and loss over scored positions (targets != -100)."""
from __future__ import annotations

import torch

from .tasks import IGNORE


def scored_counts(logits: torch.Tensor, targets: torch.Tensor, num_classes: int):
    """Per-batch sufficient statistics: summed loss, scored count, correct count, per-class
    true positives, target and prediction counts. No shape depends on the data (counts by
    ``scatter_add_``, not boolean indexing or ``bincount``), so nothing waits for the device
    and the computation can be captured in a CUDA graph."""
    mask = targets != IGNORE
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_targets = targets.reshape(-1)
    loss_sum = torch.nn.functional.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE,
                                                 reduction="sum")
    pred = flat_logits.argmax(-1)
    m = mask.reshape(-1)
    t = torch.where(m, flat_targets, torch.zeros_like(flat_targets))
    correct = (pred == t) & m
    size = max(num_classes, flat_logits.shape[-1])

    def per_class(index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        counts = torch.zeros(size, dtype=torch.long, device=index.device)
        return counts.scatter_add_(0, index, weight.long())[:num_classes]

    return (loss_sum, m.sum(), correct.sum(), per_class(t, correct), per_class(t, m),
            per_class(pred, m))


def summarize(loss_sum, count, correct, tp, support, predicted) -> dict[str, float]:
    """Token (micro) accuracy, macro accuracy and mean loss from accumulated statistics.

    Macro accuracy follows torchmetrics' ``average="macro"``: per-class recall averaged over the
    classes that occur as a target or as a prediction (a class predicted but never a target
    scores 0), computed over the whole evaluation set."""
    n = max(int(count), 1)
    present = (support > 0) | (predicted > 0)
    recall = tp.double() / support.clamp(min=1).double()
    macro = float(recall[present].mean()) if bool(present.any()) else 0.0
    return {"accuracy": float(correct) / n, "macro_accuracy": macro,
            "loss": float(loss_sum) / n, "scored_positions": int(count)}
