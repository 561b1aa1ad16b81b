"""The plain trainer: learns, is deterministic, handles divergence, reports metrics honestly."""
import dataclasses

import pytest
import torch

from madbench.metrics import scored_counts, summarize
from madbench.protocol import PRESETS
from madbench.trainer import evaluate_model, parameter_groups, train

from helpers import Lookup, identity_data

PROTO = dataclasses.replace(PRESETS["paper"], epochs=30, batch_size=16)


def test_trainer_learns_identity_and_is_deterministic():
    data, test = identity_data(), identity_data(seed=1)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        results.append(train(Lookup(), data, test, 8, 1e-2, 0.0, PROTO, seed=3))
    assert results[0].accuracy == 1.0 and not results[0].diverged
    assert results[0].steps == 30 * 4
    assert results[0].loss == results[1].loss               # same seed, same bytes


class Exploding(Lookup):
    def forward(self, x):
        return super().forward(x) * float("nan")


def test_divergence_is_recorded_with_accuracy_zero():
    r = train(Exploding(), identity_data(), identity_data(seed=1), 8, 1e-3, 0.0, PROTO, seed=0)
    assert r.diverged and r.accuracy == 0.0 and r.epochs == 1


def test_metrics_count_only_scored_positions_against_a_direct_count():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4)
    targets = torch.randint(0, 4, (3, 5))
    targets[0, :2] = -100
    m = summarize(*scored_counts(logits, targets, 4))
    mask = targets != -100
    pred = logits.argmax(-1)
    assert m["accuracy"] == pytest.approx(((pred == targets) & mask).sum().item() / mask.sum().item())
    ce = torch.nn.functional.cross_entropy(logits[mask], targets[mask])
    assert m["loss"] == pytest.approx(ce.item(), rel=1e-5)
    classes = set(targets[mask].tolist()) | set(pred[mask].tolist())
    recalls = [((pred == c) & (targets == c) & mask).sum().item() / max((targets == c).sum().item(), 1)
               for c in classes]
    assert m["macro_accuracy"] == pytest.approx(sum(recalls) / len(recalls))


def test_weight_decay_groups_skip_vectors_and_marked_parameters():
    model = Lookup()
    model.head.weight._no_weight_decay = True
    decay, no_decay = parameter_groups(model, 0.1, "matrices")
    assert {id(p) for p in decay["params"]} == {id(model.emb.weight)}
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 2
    (everything,) = parameter_groups(model, 0.1, "all")
    assert len(everything["params"]) == 3


def test_mad_lab_mode_stops_early_once_test_accuracy_is_reached():
    proto = dataclasses.replace(PRESETS["mad-lab"], epochs=200, batch_size=16)
    torch.manual_seed(0)
    r = train(Lookup(), identity_data(), identity_data(seed=1), 8, 3e-2, 0.0, proto, seed=0)
    assert r.accuracy >= 0.999 and r.epochs < 200
    assert evaluate_model(Lookup(), *identity_data(), 8, 16)["scored_positions"] == 64 * 3


def test_reference_recurrence_parameters_are_exempt_from_weight_decay():
    """docs/protocol.md: Mamba's A_log and D and Hyena's modal filter get no weight decay;
    the implicit Hyena's direct term (a vector) neither."""
    from madbench.architecture import LayerSpec, build_mixer
    for name, exempt in (("mamba", {"A_log", "D"}), ("hyena", {"direct", "bias"}),
                         ("hyena-modal", {"decay", "angle", "residue_real", "residue_imag"})):
        layer = build_mixer(LayerSpec(name), 16)
        decay, _ = parameter_groups(layer, 0.1, "matrices")
        decayed = {id(p) for p in decay["params"]}
        names = {n.split(".")[-1] for n, p in layer.named_parameters() if id(p) not in decayed}
        assert exempt <= names


def test_per_class_counts_against_a_loop_with_more_logits_than_classes():
    """Counts per class (true positives, targets, predictions over scored positions) against
    a Python loop; the logits may be wider than the classes (predictions beyond are not
    counted), as a vocabulary wider than the task's classes gives."""
    torch.manual_seed(1)
    logits = torch.randn(4, 9, 7)
    targets = torch.randint(0, 5, (4, 9))
    targets[1, 3:] = -100
    _, count, correct, tp, support, predicted = scored_counts(logits, targets, 5)
    pairs = [(int(p), int(t)) for p, t in zip(logits.argmax(-1).flatten(), targets.flatten())
             if t != -100]
    assert int(count) == len(pairs) and int(correct) == sum(p == t for p, t in pairs)
    assert tp.tolist() == [sum(p == t == c for p, t in pairs) for c in range(5)]
    assert support.tolist() == [sum(t == c for _, t in pairs) for c in range(5)]
    assert predicted.tolist() == [sum(p == c for p, _ in pairs) for c in range(5)]


def test_metrics_have_no_data_dependent_shapes():
    """scored_counts runs on fake tensors (shapes only, no values): nothing in it needs the
    data to know a shape, so on CUDA it never waits for the device and can be captured in a
    graph. Boolean indexing or bincount would raise here."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        logits = torch.randn(2, 6, 8)
        targets = torch.randint(0, 8, (2, 6))
        stats = scored_counts(logits, targets, 8)
    assert [tuple(s.shape) for s in stats[3:]] == [(8,), (8,), (8,)]


def test_a_failing_evaluation_leaves_the_model_in_training_mode():
    """evaluation_counts switches to eval mode for the forward passes and back afterwards,
    also when a forward pass raises (as one refused by CUDA-graph capture does)."""
    from madbench.trainer import evaluation_counts

    class FailsInEval(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("refused")
    model = FailsInEval().train()
    with pytest.raises(RuntimeError):
        evaluation_counts(model, torch.zeros(2, 3, dtype=torch.long),
                          torch.zeros(2, 3, dtype=torch.long), 4, 2)
    assert model.training
