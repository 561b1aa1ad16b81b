"""The graphed engine runs each configuration exactly as the plain trainer does.

On CPU it runs eagerly (no CUDA graphs), which checks everything but the capture itself: the
per-configuration seeding, batch order, learning-rate schedule, loss bookkeeping, divergence
and the mad-lab rules (evaluation every epoch, best-loss epoch, early stop). The independent
computation is the plain trainer run once per configuration. The captured path is checked on
the GPU (tests marked gpu, and benchmarks/bench_training.py --parts parity)."""
import dataclasses

import pytest
import torch

from madbench.graphed import train_graphed
from madbench.protocol import PRESETS

from helpers import CONFIGS, Lookup, SometimesNaN, identity_data, sequential

PROTO = dataclasses.replace(PRESETS["paper"], epochs=4, batch_size=16)

MADLAB = dataclasses.replace(PRESETS["mad-lab"], epochs=6, batch_size=16)


@pytest.mark.parametrize("proto", [PROTO, dataclasses.replace(PROTO, batch_size=24), MADLAB],
                         ids=["paper", "partial-last-batch", "mad-lab"])
def test_graphed_equals_plain_trainer_per_configuration(proto):
    seq = sequential(Lookup, CONFIGS, proto)
    got = train_graphed(Lookup, identity_data(), identity_data(seed=1), 8, CONFIGS, proto, 0)
    for s, g in zip(seq, got):
        assert (g.accuracy, g.loss, g.train_loss, g.steps, g.epochs, g.diverged) == \
            (s.accuracy, s.loss, s.train_loss, s.steps, s.epochs, s.diverged)


def test_a_diverging_configuration_leaves_the_others_untouched():
    configs = [(1e-3, 0.0), (1.0, 0.0)]
    got = train_graphed(SometimesNaN, identity_data(), identity_data(seed=1), 8, configs,
                        PROTO, 0)
    seq = sequential(SometimesNaN, configs, PROTO)
    assert got[1].diverged and got[1].accuracy == 0.0 and seq[1].diverged
    assert got[1].epochs == seq[1].epochs
    assert not got[0].diverged and got[0].loss == seq[0].loss


@pytest.mark.gpu
def test_captured_steps_train_like_eager_steps_on_cuda():
    """CUDA graphs replay the eager step: same losses up to kernel nondeterminism."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, y = (t.cuda() for t in identity_data())
    tx, ty = (t.cuda() for t in identity_data(seed=1))
    eager = train_graphed(Lookup, (x, y), (tx, ty), 8, CONFIGS, PROTO, 0, capture=False)
    graphed = train_graphed(Lookup, (x, y), (tx, ty), 8, CONFIGS, PROTO, 0, capture=True)
    for e, g in zip(eager, graphed):
        assert g.train_loss == pytest.approx(e.train_loss, rel=1e-4)
        assert g.loss == pytest.approx(e.loss, rel=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("proto", [MADLAB, dataclasses.replace(PROTO, early_stop_accuracy=0.5)],
                         ids=["eval-every-epoch", "early-stop"])
def test_captured_evaluations_report_what_eager_evaluations_report_on_cuda(proto):
    """Under a protocol that evaluates every epoch the graphed engine captures each
    configuration's evaluation too: the same best epoch, accuracy and loss as without graphs
    (up to kernel nondeterminism), and the evaluations are really captured."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from madbench import graphed
    x, y = (t.cuda() for t in identity_data())
    tx, ty = (t.cuda() for t in identity_data(seed=1))
    engines = []
    original = graphed.Graphed.evaluate

    def spy(self, runs):
        engines.append(self)
        return original(self, runs)
    graphed.Graphed.evaluate = spy
    try:
        eager = train_graphed(Lookup, (x, y), (tx, ty), 8, CONFIGS, proto, 0, capture=False)
        captured = train_graphed(Lookup, (x, y), (tx, ty), 8, CONFIGS, proto, 0, capture=True)
    finally:
        graphed.Graphed.evaluate = original
    assert engines and all(e is not None for e in engines[-1].evaluations.values())
    for e, g in zip(eager, captured):
        assert (g.epochs, g.steps) == (e.epochs, e.steps)
        assert g.accuracy == pytest.approx(e.accuracy, abs=1e-6)
        assert g.loss == pytest.approx(e.loss, rel=1e-4)
