"""The one training loop: every engine trains as a straightforward epoch loop written out here.

The reference loops below are independent of ``madbench.loop`` and of the engines' steps: plain
PyTorch (randperm batches from one seeded generator, the schedule set before each step,
cross-entropy over scored positions, AdamW, the loss read once per epoch, divergence and the
mad-lab rules). The plain and graphed engines (eager on CPU) must reproduce them bit for bit,
per epoch and at the end; the batched engine (vmapped, its own AdamW) to rounding; a scaling run
bit for bit."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from madbench.batched import train_batched
from madbench.graphed import train_graphed
from madbench.model import LanguageModel, auxiliary_loss
from madbench.protocol import PRESETS
from madbench.trainer import evaluate_model, lr_at, parameter_groups, train

from test_batched import SometimesNaN
from test_trainer import Lookup, identity_data


class WithAux(Lookup):
    """Leaves an auxiliary loss (as a router would), which training adds and never reports."""

    def forward(self, x):
        out = super().forward(x)
        self.aux_loss = 0.01 * self.head.weight.square().mean()
        return out


def reference(model, data, test, lr, wd, proto, seed):
    """(per-epoch training losses, result fields) of one run, written out plainly."""
    inputs, targets = data
    n, bs = inputs.shape[0], proto.batch_size
    per_epoch = -(-n // bs)
    epochs = proto.epochs_for(per_epoch)
    opt = torch.optim.AdamW(parameter_groups(model, wd, proto.decay), lr=lr,
                            betas=proto.betas, eps=proto.eps)
    gen = torch.Generator().manual_seed(seed)
    losses, best, step, diverged, epoch = [], None, 0, False, -1
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = torch.zeros(())
        for b in range(per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, epochs * per_epoch, lr, proto)
            logits = model(inputs[idx])
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                               targets[idx].reshape(-1), ignore_index=-100)
            aux = auxiliary_loss(model)
            opt.zero_grad()
            (loss if aux is None else loss + aux).backward()
            opt.step()
            total += loss.detach()
            step += 1
        losses.append(float(total) / per_epoch)
        if not math.isfinite(losses[-1]):
            diverged = True
            break
        if proto.eval_every_epoch:
            m = evaluate_model(model, *test, 8, bs)
            best = m if best is None or m["loss"] < best["loss"] else best
            if m["accuracy"] >= (proto.early_stop_accuracy or 2.0):
                break
    metrics = {"accuracy": 0.0, "loss": math.nan}
    if not diverged:
        metrics = best or evaluate_model(model, *test, 8, bs)
        diverged = not math.isfinite(metrics["loss"])
    return losses, {"accuracy": 0.0 if diverged else metrics["accuracy"],
                    "train_loss": losses[-1], "diverged": diverged, "epochs": epoch + 1,
                    "steps": step, "loss": metrics["loss"]}


def fields(result):
    return {"accuracy": result.accuracy, "train_loss": result.train_loss,
            "diverged": result.diverged, "epochs": result.epochs, "steps": result.steps,
            "loss": result.loss}


def same(a, b):
    """Equal, NaN equal to NaN: bit-for-bit agreement of the recorded numbers."""
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a.values(), b.values())) and a.keys() == b.keys()


PAPER = dataclasses.replace(PRESETS["paper"], epochs=5, batch_size=24)   # partial last batch
PROTOCOLS = {"paper": PAPER,
             "constant": dataclasses.replace(PAPER, schedule="constant", decay="all"),
             "mad-lab": dataclasses.replace(PRESETS["mad-lab"], epochs=8, batch_size=16)}
#: with the models and protocols: full runs, early stops at epochs 1 and 3 (mad-lab),
#: divergence in training (SometimesNaN at lr 1) and at the final evaluation (constant, 3e-2)
CONFIGS = [(1e-3, 0.0), (1e-2, 0.0), (3e-2, 0.1), (1.0, 0.0)]


@pytest.mark.parametrize("name", PROTOCOLS)
@pytest.mark.parametrize("model", [Lookup, WithAux, SometimesNaN])
def test_plain_and_graphed_engines_equal_the_reference_loop_bit_for_bit(name, model):
    proto = PROTOCOLS[name]
    data, test = identity_data(), identity_data(seed=1)
    expected = []
    for lr, wd in CONFIGS:
        torch.manual_seed(3)
        expected.append(reference(model(), data, test, lr, wd, proto, 3))
    for (lr, wd), (losses, want) in zip(CONFIGS, expected):
        seen = []
        torch.manual_seed(3)
        got = train(model(), data, test, 8, lr, wd, proto, 3,
                    on_epoch=lambda e, n, loss: seen.append(loss))
        assert same(fields(got), want), (lr, wd)
        finite = [x for x in losses if math.isfinite(x)]
        assert seen == finite                      # per epoch, the diverged epoch unreported
    graphed = train_graphed(model, data, test, 8, CONFIGS, proto, 3)
    for got, (_, want) in zip(graphed, expected):
        assert same(fields(got), want)


@pytest.mark.parametrize("name", ["paper", "constant"])
def test_batched_engine_follows_the_reference_loop_per_epoch(name):
    proto = PROTOCOLS[name]
    data, test = identity_data(), identity_data(seed=1)
    for lr, wd in CONFIGS[:2]:
        torch.manual_seed(3)
        losses, want = reference(Lookup(), data, test, lr, wd, proto, 3)
        seen = []
        (got,) = train_batched(Lookup, data, test, 8, [(lr, wd)], proto, 3,
                               on_epoch=lambda e, n, loss: seen.append(loss))
        assert seen == pytest.approx(losses, rel=1e-5)
        assert got.accuracy == want["accuracy"] and got.loss == pytest.approx(want["loss"],
                                                                              rel=1e-5)
        assert (got.epochs, got.steps, got.diverged) == (want["epochs"], want["steps"], False)


def test_a_scaling_run_equals_the_reference_loop_bit_for_bit():
    from madbench.scaling.plan import Recipe, plan_runs
    from madbench.scaling.runs import (recipe_lr_at as scaling_lr,
                                       recipe_parameter_groups as groups, train_run)
    rng = np.random.default_rng(0)
    data = torch.from_numpy(rng.integers(97, 101, 6000).astype(np.uint8))
    train_split, val = data[:5000], data[5000:]
    recipe = Recipe(seq_len=16, batch_size=4, eval_tokens=128, lr=3e-3, seed=2)
    (plan,) = plan_runs("hyena", [6e8], [(16, 1)], recipe, "x")
    assert plan.steps > 50                     # several steps per reported loss
    torch.manual_seed(recipe.seed)
    model = LanguageModel(plan.spec, 256)
    opt = torch.optim.AdamW(groups(model, plan.spec, recipe.weight_decay), lr=recipe.lr,
                            betas=recipe.betas, eps=1e-8)
    gen = torch.Generator().manual_seed(recipe.seed)
    every, total, reported = max(1, plan.steps // 50), torch.zeros(()), []
    span = torch.arange(recipe.seq_len + 1)
    for i in range(plan.steps):
        for group in opt.param_groups:
            group["lr"] = scaling_lr(i, plan.steps, recipe.lr)
        starts = torch.randint(0, train_split.numel() - recipe.seq_len - 1,
                               (recipe.batch_size,), generator=gen)
        chunk = train_split[starts[:, None] + span].long()
        loss = nn.functional.cross_entropy(model(chunk[:, :-1]).reshape(-1, 256),
                                           chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        total += loss.detach()
        if (i + 1) % every == 0 or i + 1 == plan.steps:
            reported.append((i + 1, float(total) / ((i % every) + 1)))
            total.zero_()
    model.eval()
    starts, val_loss = torch.arange(128 // 16) * 16, 0.0
    with torch.no_grad():
        for i in range(0, len(starts), recipe.batch_size):
            chunk = val[starts[i:i + recipe.batch_size, None] + span].long()
            val_loss += float(nn.functional.cross_entropy(
                model(chunk[:, :-1]).reshape(-1, 256), chunk[:, 1:].reshape(-1),
                reduction="sum"))
    val_loss /= len(starts) * 16
    seen = []
    result = train_run(plan, train_split, val, torch.device("cpu"),
                       on_step=lambda s, n, loss: seen.append((s, loss)))
    assert seen == reported
    assert (result["train_loss"], result["loss"]) == (reported[-1][1], val_loss)


def test_a_convergence_stop_ends_a_run_at_the_first_epoch_that_reaches_it():
    """``early_stop_accuracy`` on its own (no ``eval_every_epoch``): the run stops at the first
    epoch end whose test accuracy reaches it and reports its final weights. With a constant
    rate the epochs before a stop do not depend on the run's length, so the reference trained
    for exactly that many epochs must give the same numbers, and one epoch fewer must not reach
    the threshold. Off in ``paper``; the batched engine (which cannot stop one configuration)
    hands such protocols to the plain engine."""
    from madbench.sweep import choose_engine
    proto = dataclasses.replace(PAPER, epochs=30, schedule="constant", early_stop_accuracy=0.9)
    data, test = identity_data(), identity_data(seed=1)
    torch.manual_seed(3)
    got = train(Lookup(), data, test, 8, 1e-2, 0.0, proto, 3)
    assert 1 < got.epochs < 30 and got.accuracy >= 0.9
    plain = dataclasses.replace(proto, early_stop_accuracy=None)
    torch.manual_seed(3)
    model = Lookup()
    _, before = reference(model, data, test, 1e-2, 0.0,
                          dataclasses.replace(plain, epochs=got.epochs - 1), 3)
    assert before["accuracy"] < 0.9
    torch.manual_seed(3)
    _, want = reference(Lookup(), data, test, 1e-2, 0.0,
                        dataclasses.replace(plain, epochs=got.epochs), 3)
    assert same(fields(got), want)
    (graphed,) = train_graphed(Lookup, data, test, 8, [(1e-2, 0.0)], proto, 3)
    assert same(fields(graphed), want)
    assert PRESETS["paper"].early_stop_accuracy is None
    assert choose_engine("auto", proto, torch.device("cpu")) == "plain"
    with pytest.raises(ValueError, match="evaluates once"):
        train_batched(Lookup, data, test, 8, CONFIGS, proto, 3)


def test_a_scaling_run_whose_step_cannot_be_captured_trains_eagerly_with_one_warning(
        monkeypatch, capsys):
    """An MoE's routing reads token counts on the host, so its step cannot be captured in a
    CUDA graph: the run must warn once per architecture and train the plain step (the same
    numbers as a run that never tried), not stop the ladder."""
    from madbench.cuda_graphs import CaptureError
    from madbench.scaling import runs
    from madbench.scaling.plan import Recipe, plan_runs
    rng = np.random.default_rng(1)
    data = torch.from_numpy(rng.integers(97, 101, 3000).astype(np.uint8))
    recipe = Recipe(seq_len=16, batch_size=4, eval_tokens=64, lr=3e-3, seed=2)
    plans = plan_runs("hyena", [2e8], [(16, 1)], recipe, "x")
    plain = runs.train_run(plans[0], data[:2500], data[2500:], torch.device("cpu"),
                           capture=False)
    tries = []

    def refuse(*args, **kwargs):
        tries.append(1)
        raise CaptureError("operation not permitted when stream is capturing")
    monkeypatch.setattr(runs, "capture_enabled", lambda device, requested=None: True)
    monkeypatch.setattr(runs, "capture_step", refuse)
    real_adamw = runs.adamw          # a CPU optimiser cannot be capturable
    monkeypatch.setattr(runs, "adamw", lambda *args: real_adamw(*args[:-1], False))
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: None)
    monkeypatch.setattr(runs, "_UNCAPTURABLE", set())
    first = runs.train_run(plans[0], data[:2500], data[2500:], torch.device("cpu"))
    again = runs.train_run(plans[0], data[:2500], data[2500:], torch.device("cpu"))
    err = capsys.readouterr().err
    assert err.count("cannot be captured in a CUDA graph") == 1 and len(tries) == 1
    for got in (first, again):
        assert (got["train_loss"], got["loss"]) == (plain["train_loss"], plain["loss"])
