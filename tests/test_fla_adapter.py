"""The fla adapter on small stand-in classes, one per calling convention fla's layers use
(tuple outputs, a bare tensor, RWKV-7's v_first, MoM's router logits, a required attention
mask, YOCO's cross-attention, an output that is not hidden states, Triton-only kernels). A
fake ``fla`` package holds them, so the tests need neither fla nor a GPU."""
import os
import subprocess
import sys
from pathlib import Path
import types

import pytest
import torch
from torch import nn

from madbench import fla_adapter, fla_guard
from madbench.architecture import LayerSpec, build_mixer, mixer_entry, resolve_architecture
from madbench.checks import audit_state, check_causality
from madbench.errors import MadbenchError, UsageError
from madbench.model import LanguageModel, auxiliary_loss
from madbench.testing import check_mixer


def causal_mix(x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """Running mean over time of a projection: causal, state = width."""
    h = proj(x)
    steps = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)[None, :, None]
    return h.cumsum(1) / steps


class TupleLayer(nn.Module):
    """Most fla layers: hidden_size, heads, expansion; returns (o, None, cache)."""

    def __init__(self, hidden_size: int = 2048, num_heads: int = 4, expand_v: float = 2.0,
                 layer_idx: int | None = None, **kwargs):
        super().__init__()
        self.num_heads, self.expand_v = num_heads, expand_v
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.seen: dict = {}

    def forward(self, hidden_states, attention_mask=None, past_key_values=None,
                use_cache=False, output_attentions=False, **kwargs):
        self.seen = {"attention_mask": attention_mask, **kwargs}
        return causal_mix(hidden_states, self.proj), None, past_key_values


class DeltaNet(nn.Module):
    """Named like fla's DeltaNet so that its state is declared: a multi-head linear attention
    S_t = S_{t-1} + k_t^T v_t (heads * dk * dv state), no short convolution."""

    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, expand_k: float = 1.0,
                 expand_v: float = 1.0, use_short_conv: bool = False, conv_size: int = 4,
                 **kwargs):
        super().__init__()
        self.num_heads, self.use_short_conv, self.conv_size = num_heads, use_short_conv, conv_size
        self.key_dim, self.value_dim = int(hidden_size * expand_k), int(hidden_size * expand_v)
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.q = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.o = nn.Linear(self.value_dim, hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, **kwargs):
        b, t, _ = hidden_states.shape
        q, k = (f(hidden_states).view(b, t, self.num_heads, -1) for f in (self.q, self.k))
        v = self.v(hidden_states).view(b, t, self.num_heads, -1)
        kv = torch.einsum("bthk,bthv->bthkv", k, v).cumsum(1)
        o = torch.einsum("bthk,bthkv->bthv", q, kv).reshape(b, t, -1)
        return self.o(o), None, past_key_values


class BareLayer(nn.Module):
    """Based: ``forward(hidden_states, **kwargs)`` returns a bare tensor."""

    def __init__(self, hidden_size: int, feature_dim: int = 16, num_heads: int = 12):
        super().__init__()
        self.feature_dim, self.num_heads = feature_dim, num_heads
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states, **kwargs):
        return causal_mix(hidden_states, self.proj)


class VFirstLayer(nn.Module):
    """RWKV-7: layer 0 makes v_first; later layers need it; returns (o, None, cache, v_first)."""

    calls: list = []

    def __init__(self, hidden_size: int = 1024, head_dim: int = 64, num_heads: int | None = None,
                 layer_idx: int | None = None, num_hidden_layers: int | None = None, **kwargs):
        super().__init__()
        if layer_idx is not None and num_hidden_layers is None:
            raise TypeError("initialising a numbered layer needs num_hidden_layers")
        self.layer_idx, self.head_dim = layer_idx, head_dim
        self.v = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask=None, past_key_values=None,
                use_cache=False, output_attentions=False, v_first=None, **kwargs):
        v = causal_mix(hidden_states, self.v)
        if self.layer_idx == 0:
            v_first = v
        elif v_first is None:
            raise ValueError("a later RWKV-7 layer needs v_first")
        VFirstLayer.calls.append((self.layer_idx, v_first))
        return v + 0.5 * v_first, None, past_key_values, v_first


class RouterLayer(nn.Module):
    """MoM: a router over memories; returns (o, None, cache, router_logits[N, E])."""

    def __init__(self, hidden_size: int = 2048, num_memories: int = 4, topk: int = 2,
                 head_dim: int = 256, num_heads: int = 4, **kwargs):
        super().__init__()
        self.num_memories, self.topk = num_memories, topk
        self.gate = nn.Linear(hidden_size, num_memories, bias=False)
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, **kwargs):
        logits = self.gate(hidden_states)
        return (causal_mix(hidden_states, self.proj), None, past_key_values,
                logits.view(-1, self.num_memories))


class MaskLayer(TupleLayer):
    """MultiheadLatentAttention: attention_mask is a required argument."""

    def forward(self, hidden_states, attention_mask, past_key_values=None, **kwargs):
        return super().forward(hidden_states, attention_mask, past_key_values)


class CrossLayer(nn.Module):
    """YOCO's cross-attention: needs shared keys and values."""

    def __init__(self, hidden_size: int = 2048, num_heads: int = 32):
        super().__init__()

    def forward(self, hidden_states, shared_k, shared_v, attention_mask=None, **kwargs):
        return hidden_states, None


class KVBuilder(nn.Module):
    """A layer whose output is not hidden states."""

    def __init__(self, hidden_size: int = 2048, num_heads: int = 32):
        super().__init__()
        self.k = nn.Linear(hidden_size, 8, bias=False)

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        return self.k(hidden_states), self.k(hidden_states), None


class TritonOnly(TupleLayer):
    """A layer whose kernels need a GPU driver."""

    def forward(self, hidden_states, **kwargs):
        if hidden_states.device.type == "cpu":
            raise RuntimeError("0 active drivers ([]). There should only be one.")
        return super().forward(hidden_states, **kwargs)


class GatedDeltaNet(TupleLayer):
    """Named like fla's GatedDeltaNet, whose backward reaches fla's guarded chunk_bwd_dqkwg."""


class GatedDeltaProduct(TupleLayer):
    """Named like fla's GatedDeltaProduct: its chunked op asserts 16-bit inputs (fla's text),
    and with its forget gate (the default) its backward reaches the guarded op."""

    def __init__(self, hidden_size: int = 2048, num_heads: int = 4, use_forget_gate: bool = True,
                 **kwargs):
        super().__init__(hidden_size, num_heads)
        self.use_forget_gate = use_forget_gate
        self.dtypes: list = []

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, **kwargs):
        q = self.proj(hidden_states)
        self.dtypes.append((hidden_states.dtype, q.dtype))
        assert q.dtype != torch.float32, ("ChunkGatedDeltaProductFunction does not support "
                                          "float32. Please use bfloat16.")
        return causal_mix(hidden_states, self.proj), None, past_key_values


class Fp32Refuser(GatedDeltaProduct):
    """A class the adapter does not list that raises fla's float32 assertion."""


STAND_INS = [TupleLayer, DeltaNet, BareLayer, VFirstLayer, RouterLayer, MaskLayer, CrossLayer,
             KVBuilder, TritonOnly, GatedDeltaNet, GatedDeltaProduct, Fp32Refuser]


@pytest.fixture
def fake_fla(monkeypatch):
    """A fake ``fla`` package whose ``fla.layers`` exports the stand-ins."""
    fla = types.ModuleType("fla")
    fla.__version__ = "0.0.test"
    layers = types.ModuleType("fla.layers")
    for cls in STAND_INS:
        setattr(layers, cls.__name__, cls)
    layers.__all__ = [cls.__name__ for cls in STAND_INS]
    fla.layers = layers
    monkeypatch.setitem(sys.modules, "fla", fla)
    monkeypatch.setitem(sys.modules, "fla.layers", layers)
    for cache in (fla_adapter.fla_entry, fla_adapter.adapter_class):
        cache.cache_clear()
    fla_adapter._CPU_FAILURES.clear()
    fla_adapter._FP32_REFUSING.clear()
    VFirstLayer.calls.clear()
    yield layers
    for cache in (fla_adapter.fla_entry, fla_adapter.adapter_class):
        cache.cache_clear()
    fla_adapter._CPU_FAILURES.clear()
    fla_adapter._FP32_REFUSING.clear()


def build(name, dim=16, **kwargs):
    return build_mixer(LayerSpec(name, kwargs), dim)


@pytest.mark.parametrize("name", ["fla:TupleLayer", "fla.layers:TupleLayer"])
def test_both_name_forms_resolve_to_an_adapted_sequence_mixer(fake_fla, name):
    entry = mixer_entry(name)
    assert entry.plugin == "fla" and entry.metadata["kind"] == "sequence"
    assert issubclass(entry.obj, fla_adapter.FlaMixer) and entry.obj.layer_class is TupleLayer
    x = torch.randn(2, 5, 16)
    y = build(name)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


def test_constructor_arguments_are_mapped(fake_fla):
    """hidden_size is the width; heads of 16 and no expansion by default; --mixer-kwargs
    win; a keyword the class does not name is refused (fla's **kwargs would swallow it)."""
    layer = build("fla:TupleLayer", 64).layer
    assert (layer.proj.in_features, layer.num_heads, layer.expand_v) == (64, 4, 1.0)
    layer = build("fla:TupleLayer", 64, num_heads=2, expand_v=2.0).layer
    assert (layer.num_heads, layer.expand_v) == (2, 2.0)
    with pytest.raises(UsageError, match="takes no argument num_head"):
        build("fla:TupleLayer", 64, num_head=2)
    with pytest.raises(UsageError, match="hidden_size is the model width"):
        build("fla:TupleLayer", 64, hidden_size=32)


def test_tuple_output_is_unpacked_and_the_model_trains(fake_fla):
    """The issue's failure (AttributeError: 'tuple' object has no attribute 'shape') is gone:
    the standard model [X, SwiGLU, X, SwiGLU] runs forward and backward."""
    spec = resolve_architecture("fla.layers:TupleLayer", dim=16)
    assert [l.mixer for l in spec.layers] == ["fla.layers:TupleLayer", "swiglu"] * 2
    model = LanguageModel(spec, vocab_size=8)
    logits = model(torch.randint(0, 8, (2, 6)))
    logits.sum().backward()
    assert logits.shape == (2, 6, 8)


def test_bare_tensor_output(fake_fla):
    x = torch.randn(2, 5, 16)
    layer = build("fla:BareLayer")
    torch.testing.assert_close(layer(x), causal_mix(x, layer.layer.proj))
    assert layer.layer.num_heads == 1 and layer.layer.feature_dim == 16  # MAD defaults at 16


def test_v_first_is_threaded_between_layers(fake_fla):
    """The first v_first layer of a model makes v_first (run as fla's layer 0); the next one
    receives that very tensor; a layer run alone is a first layer."""
    spec = resolve_architecture("fla:VFirstLayer", dim=16)
    model = LanguageModel(spec, vocab_size=8)
    model(torch.randint(0, 8, (2, 6)))
    (idx0, v0), (idx1, v1) = VFirstLayer.calls
    assert (idx0, idx1) == (0, 1) and v1 is v0
    assert all(b.mixer.layer.layer_idx == 1 for b in model.encoder.blocks[::2])  # restored
    VFirstLayer.calls.clear()
    build("fla:VFirstLayer")(torch.randn(1, 4, 16))
    assert VFirstLayer.calls[0][0] == 0
    check_causality(fla_adapter.adapter_class(VFirstLayer), 16, 8)


def test_router_logits_become_an_auxiliary_loss(fake_fla):
    """MoM's router logits give a load-balancing loss (weight 0.01 by default), in training
    with gradients only; the trainers add it (auxiliary_loss)."""
    spec = resolve_architecture("fla:RouterLayer", dim=16, mixer_kwargs={"aux_loss_weight": 0.5})
    model = LanguageModel(spec, vocab_size=8).train()
    model(torch.randint(0, 8, (2, 6)))
    total = auxiliary_loss(model)
    assert total is not None and total.requires_grad
    per_layer = [b.mixer.aux_loss for b in model.encoder.blocks[::2]]
    torch.testing.assert_close(total, sum(per_layer).float())
    model.eval()
    with torch.no_grad():
        model(torch.randint(0, 8, (2, 6)))
    assert auxiliary_loss(model) is None


def test_load_balancing_loss_is_one_when_balanced_and_larger_when_not():
    uniform = torch.zeros(12, 4)
    assert float(fla_adapter.load_balancing_loss(uniform, 2)) == pytest.approx(1.0)
    skewed = torch.tensor([[5.0, 0.0, 0.0, 0.0]]).repeat(12, 1)
    assert float(fla_adapter.load_balancing_loss(skewed, 1)) > 2.0


def test_required_attention_mask_gets_none(fake_fla):
    layer = build("fla:MaskLayer")
    layer(torch.randn(1, 3, 16))
    assert layer.layer.seen["attention_mask"] is None


def test_cross_attention_is_refused_with_a_reason(fake_fla):
    with pytest.raises(UsageError, match="needs shared_k, shared_v besides the hidden states"):
        mixer_entry("fla:CrossLayer")


def test_output_that_is_not_hidden_states_is_refused(fake_fla):
    with pytest.raises(fla_adapter.FlaUnsupported, match=r"returns \(1, 3, 8\) for hidden"):
        build("fla:KVBuilder")(torch.randn(1, 3, 16))


def test_triton_only_layer_is_refused_on_cpu_in_one_line(fake_fla, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MadbenchError) as info:
        build("fla:TritonOnly")(torch.randn(1, 3, 16))
    message = str(info.value)
    assert "\n" not in message and "does not run on CPU" in message and "0 active drivers" in message


def test_unknown_class_and_missing_fla(fake_fla, monkeypatch):
    with pytest.raises(UsageError, match="has no layer class 'NoSuchLayer'"):
        mixer_entry("fla:NoSuchLayer")


def test_state_declared_by_configuration_passes_the_audit(fake_fla):
    """DeltaNet's state is declared from its configuration (heads * dk * dv) and the audit
    measures no more; a layer without a formula has unknown state."""
    layer = build("fla:DeltaNet", 16)
    assert layer.state_size(8) == 1 * 16 * 16 and layer.cache_size(8) == 0
    assert not hasattr(build("fla:TupleLayer"), "state_size")
    result = audit_state(lambda d: build("fla:DeltaNet", d, num_heads=2), 8)
    assert result.ok and result.measured_state <= result.declared_total
    check_mixer(fla_adapter.adapter_class(DeltaNet), dim=8, seq_len=8, num_heads=2)


def test_nothing_imports_fla_unless_asked():
    """Resolving the bundled layers never imports fla."""
    import subprocess
    code = ("import sys; from madbench.architecture import resolve_architecture; "
            "resolve_architecture('gated-deltanet-swiglu'); resolve_architecture('mamba2'); "
            "print('fla' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _status_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fla_status.py"
    spec = importlib.util.spec_from_file_location("fla_status", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_status_script_rows(fake_fla, monkeypatch):
    """benchmarks/fla_status.py on stand-ins: an evaluable layer with its declared and measured
    state and a smoke loss, a refused one, a Triton-only one on a machine without CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = _status_script()
    rows = [status.measure(n, "cpu", 16, 8, 8, 3)
            for n in ("DeltaNet", "CrossLayer", "TritonOnly", "KVBuilder")]
    delta, cross, triton_only, kv = rows
    assert delta["status"] == "evaluable" and delta["causal"] == "yes", delta
    assert delta["declared"] == "64 + 0" and "->" in delta["smoke"]   # 1 head of 8 x 8
    assert cross["status"] == "refused" and "shared_k" in cross["note"]
    assert triton_only["status"] == "GPU only" and "0 active drivers" in triton_only["note"]
    assert kv["status"] == "refused" and "returns (2, 8, 8)" in kv["note"]
    table = status.render(rows, "header")
    assert table.count("\n| `") == 4 and "Totals: GPU only 1, evaluable 1, refused 2" in table


def test_status_script_shows_the_rank_as_built_when_perturbed_weights_showed_more(
        fake_fla, monkeypatch):
    """A class whose state only the audit's perturbed weights show (fla's RWKV7Attention zeroes
    its output projection) gets both numbers in its row."""
    from madbench.checks.state_audit import AuditResult
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = _status_script()
    audit = AuditResult(declared_state=None, declared_cache=0, measured_state=6, ok=None,
                        informative=False, saturated=False, dim=8, prefix=8, suffix=8,
                        rtol=1e-9, dtype="float64", measured_as_built=0, perturbed=True)
    import madbench.checks
    monkeypatch.setattr(madbench.checks, "audit_state", lambda *a, **k: audit)
    assert status.measure("DeltaNet", "cpu", 16, 8, 8, 3)["measured"] == "6 (0 as built)"


# -- fla's Hopper/Triton guard (fla #640) -------------------------------------------------------
@pytest.fixture
def hopper(monkeypatch):
    """The guard's probes set to an H200 with Triton 3.6.0 and no tilelang (today's machine);
    returns a setter for the Triton version and whether tilelang is usable."""
    monkeypatch.delenv("FLA_TILELANG", raising=False)
    monkeypatch.delenv("FLA_DISABLE_BACKEND_DISPATCH", raising=False)
    monkeypatch.setattr(fla_guard, "_nvidia_hopper", lambda: True)
    monkeypatch.setattr(fla_guard, "installed_fla_version", lambda: "0.6.0")
    state = {"triton": "3.6.0", "tilelang": False}
    monkeypatch.setattr(fla_guard, "_triton_version", lambda: state["triton"])
    monkeypatch.setattr(fla_guard, "_tilelang_installed", lambda: state["tilelang"])

    def set_(triton=None, tilelang=None):
        if triton is not None:
            state["triton"] = triton
        if tilelang is not None:
            state["tilelang"] = tilelang
    return set_


def test_hopper_guard_mirrors_fla_condition(hopper, monkeypatch):
    """fla raises when IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1 and its
    TileLang backend does not take the call (tilelang and nvcc found, FLA_TILELANG not 0,
    dispatch on)."""
    reason = fla_guard.hopper_guard()
    assert "Triton 3.6.0" in reason and "Triton >= 3.7.1 or tilelang" in reason
    assert "\n" not in reason
    for version, guarded in [("3.3.1", False), ("3.4.0", True), ("3.7.0", True),
                             ("3.7.1rc1", True), ("3.7.1", False), ("3.8.0", False)]:
        hopper(triton=version)
        assert (fla_guard.hopper_guard() is not None) is guarded, version
    hopper(triton="3.6.0", tilelang=True)
    assert fla_guard.hopper_guard() is None
    assert fla_guard.hopper_guard(tilelang_helps=False) is not None   # simple_gla in bf16
    monkeypatch.setenv("FLA_TILELANG", "0")
    assert fla_guard.hopper_guard() is not None
    monkeypatch.delenv("FLA_TILELANG")
    monkeypatch.setenv("FLA_DISABLE_BACKEND_DISPATCH", "1")
    assert fla_guard.hopper_guard() is not None
    monkeypatch.setattr(fla_guard, "_nvidia_hopper", lambda: False)
    assert fla_guard.hopper_guard() is None


@pytest.mark.parametrize("name, capability, hopper", [
    ("NVIDIA H200", (9, 0), True), ("NVIDIA GH200 480GB", (9, 0), True),
    ("NVIDIA H100 80GB HBM3", (9, 0), True), ("NVIDIA A100-SXM4-80GB", (8, 0), False),
    ("NVIDIA B200", (10, 0), False)])
def test_hopper_probe_is_fla_is_nvidia_hopper(monkeypatch, name, capability, hopper):
    """'NVIDIA H' in device 0's name or compute capability 9.x, on NVIDIA (not ROCm)."""
    probe = fla_guard._nvidia_hopper.__wrapped__
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: capability)
    assert probe() is hopper
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert probe() is False


def test_guarded_class_is_refused_up_front_in_one_line(fake_fla, hopper, tmp_path):
    """Resolving a class whose backward reaches the guarded op is a usage error (before any
    training); `madbench eval` exits non-zero with one line that names the fix."""
    with pytest.raises(UsageError) as info:
        mixer_entry("fla:GatedDeltaNet")
    message = str(info.value)
    assert "\n" not in message and "chunk_gated_delta_rule" in message
    assert "Triton >= 3.7.1 or tilelang" in message
    mixer_entry("fla:TupleLayer")                      # unguarded classes resolve as before
    from click.testing import CliRunner
    from madbench.cli import main
    result = CliRunner().invoke(main, ["eval", "--arch", "fla:GatedDeltaNet", "--tasks",
                                       "memorization", "--preset", "smoke", "--device", "cpu",
                                       "--no-progress", "--run-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "Triton >= 3.7.1" in lines[0], result.output
    from madbench.store import ResultsStore
    assert not (tmp_path / "runs").exists() or not ResultsStore(tmp_path / "runs").keys()
    hopper(triton="3.7.1")
    fla_adapter.fla_entry.cache_clear()
    mixer_entry("fla:GatedDeltaNet")


def test_conditional_guarded_class_is_refused_when_built(fake_fla, hopper):
    """GatedDeltaProduct reaches the guarded op through its forget gate only: resolved, then
    refused when built with the gate (the default), built without it."""
    mixer_entry("fla:GatedDeltaProduct")
    with pytest.raises(fla_adapter.FlaUnsupported, match="chunk_gated_delta_product"):
        build("fla:GatedDeltaProduct")
    assert build("fla:GatedDeltaProduct", use_forget_gate=False).layer.use_forget_gate is False


def test_guarded_classes_resolve_off_hopper(fake_fla):
    """On this machine (no Hopper GPU) nothing is refused for the guard."""
    assert fla_guard.hopper_guard() is None
    mixer_entry("fla:GatedDeltaNet")


# -- fla ops that refuse float32 -----------------------------------------------------------------
def test_fp32_refusing_layer_runs_in_bf16_on_the_kernel_device(fake_fla, monkeypatch):
    """GatedDeltaProduct asserts 16-bit inputs: handed float32 on CUDA (CPU stands in here), the
    call that raises fla's assertion runs again with the input cast to bf16 under bf16
    autocast, and returns the input dtype; gradients reach the float32 input and parameters;
    the next call of the same shape goes to bf16 at once."""
    monkeypatch.setattr(fla_adapter, "_kernel_device", lambda device: True)
    layer = build("fla:GatedDeltaProduct")
    x = torch.randn(2, 5, 16, requires_grad=True)
    y = layer(x)
    assert layer.layer.dtypes == [(torch.float32, torch.float32),
                                  (torch.bfloat16, torch.bfloat16)]
    assert y.dtype == torch.float32 and y.shape == x.shape
    y.square().mean().backward()
    assert x.grad.dtype == torch.float32 and layer.layer.proj.weight.grad is not None
    torch.testing.assert_close(y, causal_mix(x, layer.layer.proj), rtol=2e-2, atol=2e-2)
    layer(x)
    assert layer.layer.dtypes[2:] == [(torch.bfloat16, torch.bfloat16)]


def test_fp32_layer_is_not_cast_off_the_kernel_device_or_in_16_bit(fake_fla):
    """On CPU nothing is cast (fla's kernels do not run there); a 16-bit input is not cast."""
    layer = build("fla:TupleLayer")
    x = torch.randn(2, 5, 16)
    assert not layer.casts_to_bf16(x) and not layer.casts_to_bf16(x.bfloat16())
    assert not build("fla:GatedDeltaProduct").casts_to_bf16(x)


def test_nothing_is_cast_under_an_outer_autocast(fake_fla, monkeypatch):
    """Under the trainer's bf16 autocast the layer's own projections give its op bf16: the
    float32 input is left alone and nothing is retried (the CPU's autocast stands in)."""
    monkeypatch.setattr(fla_adapter, "_kernel_device", lambda device: True)
    layer = build("fla:GatedDeltaProduct")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(torch.randn(2, 5, 16))
    assert layer.layer.dtypes == [(torch.float32, torch.bfloat16)]
    assert not layer.casts_to_bf16(torch.randn(2, 5, 16))


def test_fp32_refusal_is_remembered_for_its_mode_and_length_only(fake_fla, monkeypatch):
    """fla picks its op by mode and length (DeltaNet: a recurrent op, which takes float32, up
    to 64 positions; the chunked one, which refuses it, beyond): a refusal found in training at
    one length does not move evaluation, or another length, to bf16 (the state audit measures
    such layers in float32 on short sequences)."""
    monkeypatch.setattr(fla_adapter, "_kernel_device", lambda device: True)
    layer = build("fla:Fp32Refuser")
    first = [d for d, _ in layer.layer.dtypes]
    layer(torch.randn(2, 5, 16))                       # training, length 5: found refusing
    layer(torch.randn(2, 5, 16))                       # ... then bf16 at once
    assert [d for d, _ in layer.layer.dtypes] == first + [torch.float32, torch.bfloat16,
                                                           torch.bfloat16]
    assert layer.casts_to_bf16(torch.randn(2, 5, 16))
    assert not layer.casts_to_bf16(torch.randn(2, 7, 16))        # another length: tried again
    with torch.autocast("cpu", dtype=torch.bfloat16):            # an outer autocast decides
        assert not layer.casts_to_bf16(torch.randn(2, 5, 16))
    with torch.no_grad():
        assert not layer.casts_to_bf16(torch.randn(2, 5, 16))    # gradients off: tried again
    layer.eval()
    assert not layer.casts_to_bf16(torch.randn(2, 5, 16))        # another mode: tried again


def test_a_refusal_under_an_outer_autocast_runs_once_more_in_bf16(fake_fla, monkeypatch):
    """A layer whose op refuses float32 even under an outer autocast (its input is checked, not
    its projections' output): the call runs once more in bf16, and no further."""
    monkeypatch.setattr(fla_adapter, "_kernel_device", lambda device: True)
    layer = build("fla:TupleLayer")
    seen, inner = [], layer.layer.forward

    def forward(hidden_states, **kwargs):
        seen.append(hidden_states.dtype)
        assert hidden_states.dtype != torch.float32, "Op does not support float32. Use bf16."
        return inner(hidden_states, **kwargs)
    monkeypatch.setattr(layer.layer, "forward", forward)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(2, 5, 16))
    assert seen == [torch.float32, torch.bfloat16] and y.dtype == torch.float32


@pytest.mark.parametrize("error", [
    TypeError("parallel_parallax requires bf16 or fp16 inputs, got q.dtype=torch.float32"),
    TypeError("Stick-breaking projections require matching fp16/bf16 tensors. Use mixed "
              "precision or convert the model."),
])
def test_an_op_refusing_float32_with_a_type_error_runs_in_bf16(fake_fla, monkeypatch, error):
    """fla's Parallax and stick-breaking ops refuse float32 with a TypeError, not fla's usual
    assertion: the call runs once more in bf16, and the output comes back in float32. Any other
    TypeError is raised as it is."""
    monkeypatch.setattr(fla_adapter, "_kernel_device", lambda device: True)
    layer = build("fla:TupleLayer")
    seen, inner, errors = [], layer.layer.forward, [error]

    def forward(hidden_states, **kwargs):
        seen.append(hidden_states.dtype)
        if hidden_states.dtype == torch.float32:
            raise errors[-1]
        return inner(hidden_states, **kwargs)
    monkeypatch.setattr(layer.layer, "forward", forward)
    y = layer(torch.randn(2, 5, 16))
    assert seen == [torch.float32, torch.bfloat16] and y.dtype == torch.float32

    seen.clear()
    errors.append(TypeError("forward() got an unexpected keyword argument 'cache'"))
    with pytest.raises(Exception, match="unexpected keyword"):     # not retried in bf16
        layer(torch.randn(2, 7, 16))
    assert seen == [torch.float32]


def test_status_script_classifies_the_guard(fake_fla, hopper, monkeypatch):
    """benchmarks/fla_status.py: a class refused for the guard (up front, or by fla's own
    RuntimeError) gets its own status and its own count."""
    status = _status_script()
    row = status.measure("GatedDeltaNet", "cpu", 16, 8, 8, 3)
    assert row["status"] == status.GUARDED and "Triton 3.6.0" in row["note"], row
    assert status.hopper_guarded("RuntimeError: Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs "
                                 "produces incorrect results for gated chunk_bwd_dqkwg (see #640).")
    table = status.render([row], "header")
    assert "Totals: GPU only: needs Triton >= 3.7.1 or tilelang on Hopper (fla's guard) 1" in table


def test_guard_applies_only_to_the_fla_release_it_mirrors(hopper, monkeypatch):
    """The mirror follows fla 0.6's source; under another release (or none) it refuses
    nothing and leaves fla to say what it refuses."""
    assert fla_guard.hopper_guard() is not None
    for version in ("0.7.0", "0.5.9", None):
        monkeypatch.setattr(fla_guard, "installed_fla_version", lambda v=version: v)
        assert fla_guard.hopper_guard() is None, version


FAKE_FLA_LAYERS = '''
import os, time, torch
from torch import nn
class Good(nn.Module):
    def __init__(self, hidden_size, **kwargs):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)
    def forward(self, hidden_states, **kwargs):
        return torch.cumsum(self.proj(hidden_states), dim=1), None, None
class Hangs(Good):
    def __init__(self, hidden_size, **kwargs):
        time.sleep(3600)
class Dies(Good):
    def __init__(self, hidden_size, **kwargs):
        os._exit(7)
__all__ = ["Good", "Hangs", "Dies"]
'''


def test_status_script_survives_hangs_and_crashes_and_resumes(tmp_path):
    """The status script run for real (its own processes) on a fake fla: one class is measured,
    one whose process dies is reported; resuming that table measures only the class it lacks,
    which hangs and is killed at --class-timeout-s, and keeps the other rows as they are (one
    is edited to prove it is not measured again); --classes with --resume measures the named
    class again and keeps every row; a missing table is refused in one line."""
    (tmp_path / "fla" / "layers").mkdir(parents=True)
    (tmp_path / "fla" / "__init__.py").write_text("__version__ = '0.0.test'\n")
    (tmp_path / "fla" / "layers" / "__init__.py").write_text(FAKE_FLA_LAYERS)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "fla_status.py"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}

    def status(out, *extra):
        done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--steps", "2",
                               "--workers", "3", "--out", str(tmp_path / out), *extra],
                              env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = {line.split("`")[1]: line for line in (tmp_path / out).read_text().splitlines()
                if line.startswith("| `")}
        return rows, done.stderr

    rows, _ = status("first.md", "--classes", "Good,Dies", "--class-timeout-s", "120")
    assert set(rows) == {"Good", "Dies"}
    assert "| evaluable |" in rows["Good"], rows["Good"]
    assert "exited with code 7" in rows["Dies"]
    first = tmp_path / "first.md"
    first.write_text(first.read_text().replace(rows["Good"],
                                               rows["Good"].replace("evaluable", "kept-row")))
    rows, log = status("second.md", "--resume", str(first), "--class-timeout-s", "5")
    assert set(rows) == {"Good", "Hangs", "Dies"}
    assert "| kept-row |" in rows["Good"] and "exited with code 7" in rows["Dies"]
    assert "fails: no result" in rows["Hangs"] and "within 5 s" in rows["Hangs"]
    assert "Good:" not in log and "Dies:" not in log and "Hangs: fails" in log
    assert "2 rows kept from first.md" in (tmp_path / "second.md").read_text()
    rows, log = status("third.md", "--resume", str(tmp_path / "second.md"), "--classes", "Dies")
    assert "Dies: fails at measuring" in log and "Good:" not in log and "Hangs:" not in log
    assert "| kept-row |" in rows["Good"] and "within 5 s" in rows["Hangs"]
    missing = subprocess.run([sys.executable, str(script), "--resume", str(tmp_path / "no.md")],
                             env=env, capture_output=True, text=True, timeout=240)
    assert missing.returncode == 2 and "--resume: cannot read" in missing.stderr
