"""The DeltaNet-class baselines: DeltaNet, Gated DeltaNet, Mamba-2 and RWKV-7. Each op's chunked
form against its naive recurrence, the recurrence against the definition written with explicit
matrices, each layer's causality and state audit, counts, and (on a GPU) each kernel path
against its reference."""
import pytest
import torch
import torch.nn.functional as F

from madbench.checks import audit_state, check_causality
from madbench.model import LanguageModel
from madbench.architecture import resolve_architecture
from madbench.plugins import get_registry
from madbench_layers.deltanet import DeltaNet, GatedDeltaNet
from madbench_layers.mamba2 import Mamba2
from madbench.errors import UsageError
from madbench.fla_guard import hopper_guard
from madbench_layers.ops.delta_rule import (delta_rule, delta_rule_chunked, delta_rule_fla,
                                            delta_rule_recurrent)
from madbench_layers.ops.rwkv7 import rwkv7, rwkv7_chunked, rwkv7_recurrent
from madbench_layers.ops.ssd import ssd, ssd_recurrent
from madbench_layers.rwkv7 import RWKV7

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def delta_inputs(seq_len, dtype=F64, seed=0, dk=4, dv=5):
    g = gen(seed)
    q, k = torch.randn(2, 2, 3, seq_len, dk, dtype=dtype, generator=g)
    k = F.normalize(k, dim=-1)
    v = torch.randn(2, 3, seq_len, dv, dtype=dtype, generator=g)
    beta = torch.rand(2, 3, seq_len, dtype=dtype, generator=g)
    log_alpha = F.logsigmoid(3 * torch.randn(2, 3, seq_len, dtype=dtype, generator=g))
    return q, k, v, beta, log_alpha


def rwkv7_inputs(seq_len, dtype=F64, seed=0, dk=4, dv=5):
    g = gen(seed)
    r, k, kappa = torch.randn(3, 2, 3, seq_len, dk, dtype=dtype, generator=g)
    kappa = F.normalize(kappa, dim=-1)
    v = torch.randn(2, 3, seq_len, dv, dtype=dtype, generator=g)
    w = -0.6065 * torch.rand(2, 3, seq_len, dk, dtype=dtype, generator=g)
    iclr = torch.rand(2, 3, seq_len, dk, dtype=dtype, generator=g)
    return r, w, k, v, -kappa, kappa * iclr


def ssd_inputs(seq_len, dtype=F64, seed=0, dk=4, dv=5):
    g = gen(seed)
    x = torch.randn(2, 3, seq_len, dv, dtype=dtype, generator=g)
    dt = F.softplus(torch.randn(2, 3, seq_len, dtype=dtype, generator=g))
    A = -torch.rand(3, dtype=dtype, generator=g) * 4
    B, C = torch.randn(2, 2, seq_len, dk, dtype=dtype, generator=g)
    return x, dt, A, B, C


# -- ops against their recurrences -------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 3, 16, 64])
@pytest.mark.parametrize("gated", [False, True])
def test_delta_rule_chunked_matches_recurrent(chunk_size, gated):
    """seq_len 21 is no multiple of 3 or 16 and shorter than 64."""
    q, k, v, beta, log_alpha = delta_inputs(21)
    la = log_alpha if gated else None
    torch.testing.assert_close(delta_rule_chunked(q, k, v, beta, la, 0.5, chunk_size),
                               delta_rule_recurrent(q, k, v, beta, la, 0.5), rtol=1e-10, atol=1e-10)


def test_delta_rule_recurrence_is_the_definition():
    """S_t = alpha_t (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t, o_t = scale q_t S_t."""
    q, k, v, beta, log_alpha = delta_inputs(6)
    out = delta_rule_recurrent(q, k, v, beta, log_alpha, 0.5)
    S = torch.zeros(4, 5, dtype=F64)
    for t in range(6):
        kt = k[1, 2, t][:, None]
        S = log_alpha[1, 2, t].exp() * (torch.eye(4, dtype=F64) - beta[1, 2, t] * kt @ kt.T) @ S \
            + beta[1, 2, t] * kt @ v[1, 2, t][None, :]
        torch.testing.assert_close(out[1, 2, t], 0.5 * q[1, 2, t] @ S)


def test_delta_rule_with_beta_one_overwrites_the_value_of_a_key():
    """Property: beta = 1, alpha = 1 and a repeated unit key: reading that key returns the
    last value written under it (the delta rule replaces, linear attention would add)."""
    k = F.normalize(torch.randn(1, 1, 1, 4, dtype=F64), dim=-1).expand(1, 1, 3, 4)
    v = torch.randn(1, 1, 3, 5, dtype=F64)
    out = delta_rule_recurrent(k, k, v, torch.ones(1, 1, 3, dtype=F64))
    torch.testing.assert_close(out[0, 0, 2], v[0, 0, 2])


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 64])
def test_rwkv7_chunked_matches_recurrent(chunk_size):
    args = rwkv7_inputs(21)
    torch.testing.assert_close(rwkv7_chunked(*args, chunk_size), rwkv7_recurrent(*args),
                               rtol=1e-10, atol=1e-10)


def test_rwkv7_recurrence_is_the_definition():
    """S_t = diag(exp w_t) S_{t-1} + b_t^T (a_t S_{t-1}) + k_t^T v_t, o_t = r_t S_t: the state
    transition is diag(exp w) + b^T a, a diagonal-plus-rank-one matrix."""
    r, w, k, v, a, b = rwkv7_inputs(6)
    out = rwkv7_recurrent(r, w, k, v, a, b)
    S = torch.zeros(4, 5, dtype=F64)
    for t in range(6):
        transition = torch.diag(w[0, 1, t].exp()) + b[0, 1, t][:, None] @ a[0, 1, t][None, :]
        S = transition @ S + k[0, 1, t][:, None] @ v[0, 1, t][None, :]
        torch.testing.assert_close(out[0, 1, t], r[0, 1, t] @ S)


def test_rwkv7_with_full_learning_rate_is_a_delta_rule():
    """Property: w = 0 (no decay), a = -kappa, b = kappa (iclr 1), k = kappa: RWKV-7 is the
    delta rule with beta = 1 on the normalised key."""
    q, kappa, v, _, _ = delta_inputs(9)
    ones = torch.ones(kappa.shape[:3], dtype=F64)
    torch.testing.assert_close(
        rwkv7_recurrent(q, torch.zeros_like(kappa), kappa, v, -kappa, kappa),
        delta_rule_recurrent(q, kappa, v, ones))


@pytest.mark.parametrize("chunk_size", [1, 3, 16])
def test_ssd_chunked_matches_sequential_scan(chunk_size):
    args = ssd_inputs(21)
    torch.testing.assert_close(ssd(*args, chunk_size=chunk_size), ssd_recurrent(*args),
                               rtol=1e-10, atol=1e-10)


def test_ssd_scan_is_the_definition():
    """h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T (P x N), y_t = h_t C_t, one head."""
    x, dt, A, B, C = ssd_inputs(5)
    out = ssd_recurrent(x, dt, A, B, C)
    h = torch.zeros(5, 4, dtype=F64)
    for t in range(5):
        h = torch.exp(dt[1, 2, t] * A[2]) * h + dt[1, 2, t] * torch.outer(x[1, 2, t], B[1, t])
        torch.testing.assert_close(out[1, 2, t], h @ C[1, t])


# -- layers ----------------------------------------------------------------------------------------
LAYERS = [("deltanet", DeltaNet), ("gated-deltanet", GatedDeltaNet), ("mamba2", Mamba2),
          ("rwkv7", RWKV7)]


def build(name, dim=128, **kwargs):
    entry = get_registry().mixers[name]
    return entry.obj(dim, **{**entry.metadata.get("defaults", {}), **kwargs})


@pytest.mark.parametrize("name,cls", LAYERS)
def test_registered(name, cls):
    assert get_registry().mixers[name].obj.__qualname__ == cls.__qualname__


@pytest.mark.parametrize("name", [n for n, _ in LAYERS])
def test_causal_and_shape_preserving(name):
    small = {"mamba2": {"head_dim": 8}}.get(name, {"num_heads": 2})
    torch.manual_seed(0)
    layer = build(name, 16, **small)
    result = check_causality(layer, 16, 12)
    assert result.causal, result.message
    y = layer(torch.randn(2, 7, 16))
    assert y.shape == (2, 7, 16) and y.dtype == torch.float32


@pytest.mark.parametrize("name,kwargs", [("deltanet", {"num_heads": 2}),
                                         ("gated-deltanet", {"num_heads": 2}),
                                         ("mamba2", {"head_dim": 4, "expand": 1}),
                                         ("rwkv7", {"head_dim": 4})])
def test_state_audit_passes(name, kwargs):
    """The measured state (rank of the Jacobian across a split) is at most the declared state
    plus cache, at width 8, with an informative Jacobian."""
    result = audit_state(lambda d: build(name, d, **kwargs), 8)
    assert result.ok and result.informative, result.message


@pytest.mark.parametrize("name,params,state,cache", [
    ("deltanet", 4 * 128 * 128 + 128 * 8 + 3 * 128 * 4 + 16, 2048, 1152),
    ("gated-deltanet", 5 * 128 * 128 + 2 * 128 * 8 + 2 * 8 + 3 * 128 * 4 + 16, 2048, 1152),
    ("mamba2", 128 * (256 + 264 + 4) + 264 * 4 + 3 * 4 + 256 + 256 * 128, 1024, 792),
    ("rwkv7", 6 * 128 + 3 * 128 + 4 * 128 * 128 + 3 * (2 * 128 * 32 + 128) + 2 * 128 * 64
     + 2 * 128, 2048, 128),
])
def test_counts_at_mad_defaults(name, params, state, cache):
    """Hand counts at width 128: DeltaNet q, k, v, o + beta + three short convs + norm; Gated
    DeltaNet adds the output gate, a_proj, A_log and dt_bias; Mamba-2 in_proj (z, xBC, dt),
    conv over xBC, A_log, dt_bias, D, norm, out_proj; RWKV-7 token-shift mixes, k_k, k_a, r_k,
    r/k/v/o, three rank-32 maps with bias, the rank-64 gate, GroupNorm."""
    layer = build(name)
    assert sum(p.numel() for p in layer.parameters()) == params
    assert layer.state_size(128) == layer.state_size(8192) == state
    assert layer.cache_size(128) == cache


@pytest.mark.parametrize("preset", ["deltanet-swiglu", "gated-deltanet-moe", "rwkv7-swiglu",
                                    "mamba2", "mamba2-swiglu"])
def test_presets_are_iso_state(preset):
    from madbench.accounting import check_iso_state, describe_architecture
    ok, message = check_iso_state(describe_architecture(preset))
    assert ok, message


def test_rwkv7_v_first_is_threaded_through_the_model():
    """In [R7, Sg, R7, Sg] the first RWKV-7 layer leaves its value as v_first in the model's
    per-forward context and the second one receives it; the second layer's output depends on
    it (a layer run alone uses its own v)."""
    from madbench_layers.rwkv7 import V_FIRST
    torch.manual_seed(0)
    model = LanguageModel(resolve_architecture("rwkv7-swiglu", dim=16), vocab_size=8)
    seen = []
    hooks = [model.encoder.blocks[index].mixer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(dict(kwargs["context"])), with_kwargs=True)
        for index in (0, 2)]
    model(torch.randint(0, 8, (2, 5)))
    for hook in hooks:
        hook.remove()
    assert V_FIRST not in seen[0] and seen[1][V_FIRST].shape == (2, 5, 16)
    second = model.encoder.blocks[2].mixer
    x = torch.randn(2, 5, 16)
    alone = second(x)
    with_first = second(x, context={V_FIRST: torch.randn(2, 5, 16)})
    assert not torch.allclose(alone, with_first)


# -- kernel paths (GPU) ----------------------------------------------------------------------------
def rel_err(a, b):
    """max |a - b| / max |b|: fla's kernels take fp32 inputs through TF32 products (about
    1e-3); a wrong convention shows as an error of order 1."""
    return float((a.double() - b.double()).abs().max()) / max(float(b.abs().max()), 1e-12)


def assert_matches_reference(out, ref, args, ref_args, fwd_tol=1e-2, grad_tol=2e-2):
    """A kernel's output ``out`` of ``args`` against the reference's ``ref`` of ``ref_args``
    (their float64 copies): the outputs, then the gradients of their sums, within ``rel_err``
    tolerances."""
    assert rel_err(out, ref) < fwd_tol
    out.float().sum().backward()
    ref.sum().backward()
    for a, b in zip(args, ref_args):
        assert rel_err(a.grad, b.grad) < grad_tol


def _fla_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("fla")


@pytest.mark.gpu
@pytest.mark.parametrize("gated", [False, True])
def test_delta_rule_fla_kernel_matches_reference(gated):
    """fla's chunked kernels against the reference: the gated one in float32; the plain one in
    bfloat16, since fla's chunk_delta_rule asserts 16-bit inputs (bf16 rounding, hence the
    looser bounds). The gated backward is skipped where fla's Hopper/Triton guard refuses it."""
    _fla_or_skip()
    if gated and hopper_guard() is not None:
        pytest.skip(hopper_guard())
    dtype, fwd_tol, grad_tol = ((torch.float32, 1e-2, 2e-2) if gated
                                else (torch.bfloat16, 3e-2, 5e-2))
    inputs = delta_inputs(100, seed=3, dk=16, dv=32)
    q, k, v, beta, log_alpha = (t.float().cuda() for t in inputs)
    la = log_alpha if gated else None
    args = [t.to(dtype).requires_grad_() for t in (q, k, v, beta)]
    ref_args = [t.detach().double().requires_grad_() for t in args]
    out = delta_rule(*args, la, 0.5, backend="fla")
    ref = delta_rule(*ref_args, None if la is None else la.double(), 0.5, backend="reference")
    assert_matches_reference(out, ref, args, ref_args, fwd_tol, grad_tol)


@pytest.mark.gpu
def test_fla_refuses_what_the_fallback_avoids():
    """What madbench reads in fla's source, on the GPU: chunk_delta_rule asserts on float32;
    where the guard's probes say so, the gated backward raises fla's own RuntimeError (and
    otherwise it runs). Also checks the probes against fla's own flags."""
    _fla_or_skip()
    from madbench.fla_adapter import import_fla
    fla_utils, fla_backends = import_fla("fla.utils"), import_fla("fla.backends")
    backend = import_fla("fla.ops.common.backends.tilelang").CommonTileLangBackend
    tilelang = (backend.is_available() and backend().is_enabled()
                and not fla_backends._DISPATCH_DISABLED)
    fla_says = (fla_utils.IS_NVIDIA_HOPPER and fla_utils.TRITON_ABOVE_3_4_0
                and not fla_utils.TRITON_ABOVE_3_7_1 and not tilelang)
    assert (hopper_guard() is not None) == bool(fla_says)
    q, k, v, beta, log_alpha = (t.float().cuda() for t in delta_inputs(100, seed=3, dk=16, dv=32))
    with pytest.raises(AssertionError, match="does not support float32"):
        delta_rule_fla(q, k, v, beta)
    args = [t.clone().requires_grad_() for t in (q, k, v, beta)]
    out = delta_rule_fla(*args, log_alpha)
    if hopper_guard() is not None:
        with pytest.raises(RuntimeError, match="chunk_bwd_dqkwg"):
            out.sum().backward()
    else:
        out.sum().backward()


# -- where fla refuses, "auto" takes the reference (CPU, probes monkeypatched) ------------------
@pytest.fixture
def fla_on_cuda(monkeypatch):
    """fla importable and tensors on a kernel device (CPU tensors stand in), fla's kernel
    replaced by a recorder; the guard's probes on an H200 with Triton 3.6.0, no tilelang."""
    from madbench import fla_guard
    from madbench_layers.ops import delta_rule as op
    from madbench_layers.ops import fla_backend
    monkeypatch.delenv("MADBENCH_KERNELS", raising=False)
    monkeypatch.delenv("FLA_TILELANG", raising=False)
    monkeypatch.delenv("FLA_DISABLE_BACKEND_DISPATCH", raising=False)
    monkeypatch.setattr(fla_backend, "fla_importable", lambda: True)
    monkeypatch.setattr(fla_backend, "_on_kernel_device", lambda t: True)
    monkeypatch.setattr(fla_backend, "_WARNED", set())
    calls = []

    def fake_fla(q, k, v, beta, log_alpha=None, scale=1.0):
        calls.append(q.dtype)
        return torch.zeros(*q.shape[:3], v.shape[-1], dtype=q.dtype)
    monkeypatch.setattr(op, "delta_rule_fla", fake_fla)
    monkeypatch.setattr(fla_guard, "_nvidia_hopper", lambda: True)
    monkeypatch.setattr(fla_guard, "installed_fla_version", lambda: "0.6.0")
    state = {"triton": "3.6.0", "tilelang": False}
    monkeypatch.setattr(fla_guard, "_triton_version", lambda: state["triton"])
    monkeypatch.setattr(fla_guard, "_tilelang_installed", lambda: state["tilelang"])
    return calls, state


def test_gated_delta_rule_takes_the_reference_under_fla_hopper_guard(fla_on_cuda, capsys):
    calls, state = fla_on_cuda
    q, k, v, beta, log_alpha = delta_inputs(21, dtype=torch.float32)
    expected = delta_rule_chunked(q, k, v, beta, log_alpha, 0.5, 16)
    torch.testing.assert_close(delta_rule(q, k, v, beta, log_alpha, 0.5), expected)
    delta_rule(q, k, v, beta, log_alpha, 0.5)
    assert calls == []
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning: the gated delta rule runs madbench")
    assert "Triton 3.6.0" in lines[0] and "Triton >= 3.7.1 or tilelang" in lines[0]
    with pytest.raises(UsageError, match="backend 'fla' asked for the gated delta rule, but"):
        delta_rule(q, k, v, beta, log_alpha, 0.5, backend="fla")
    for triton, tilelang in [("3.7.1", False), ("3.6.0", True), ("3.3.1", False)]:
        state.update(triton=triton, tilelang=tilelang)
        delta_rule(q, k, v, beta, log_alpha, 0.5)
    assert calls == [torch.float32] * 3


def test_plain_delta_rule_takes_the_reference_in_float32(fla_on_cuda, capsys, monkeypatch):
    """fla's chunk_delta_rule asserts 16-bit inputs; the guard does not concern it (g=None)."""
    calls, state = fla_on_cuda
    q, k, v, beta, _ = delta_inputs(21, dtype=torch.float32)
    torch.testing.assert_close(delta_rule(q, k, v, beta, None, 0.5),
                               delta_rule_chunked(q, k, v, beta, None, 0.5, 16))
    assert calls == [] and "does not take float32" in capsys.readouterr().err
    delta_rule(*(t.bfloat16() for t in (q, k, v, beta)), None, 0.5)
    assert calls == [torch.bfloat16]
    from madbench_layers.ops.fla_backend import resolve_fla_backend
    assert resolve_fla_backend("reference", q.bfloat16()) == "reference"
    monkeypatch.setenv("MADBENCH_KERNELS", "reference")
    assert resolve_fla_backend("auto", q.bfloat16()) == "reference"


def test_gated_deltanet_layer_trains_through_the_reference_under_the_guard(fla_on_cuda, capsys):
    calls, _ = fla_on_cuda
    layer = build("gated-deltanet", 32, num_heads=2)
    layer(torch.randn(2, 20, 32)).square().mean().backward()
    assert calls == [] and layer.q_proj.weight.grad is not None
    assert capsys.readouterr().err.count("Warning:") == 1


@pytest.mark.gpu
def test_rwkv7_fla_kernel_matches_reference():
    _fla_or_skip()
    args = [t.float().cuda().requires_grad_() for t in rwkv7_inputs(100, seed=4, dk=16, dv=16)]
    ref_args = [t.detach().double().requires_grad_() for t in args]
    out = rwkv7(*args, backend="fla", w_lower_bound=-0.6065306597126334)
    assert_matches_reference(out, rwkv7(*ref_args, backend="reference"), args, ref_args)


@pytest.mark.gpu
def test_ssd_kernel_matches_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    args = [t.float().cuda().requires_grad_() for t in ssd_inputs(100, seed=5, dk=8, dv=32)]
    ref_args = [t.detach().double().requires_grad_() for t in args]
    assert_matches_reference(ssd(*args, backend="triton"), ssd_recurrent(*ref_args), args,
                             ref_args)


@pytest.mark.gpu
@pytest.mark.parametrize("name", [n for n, _ in LAYERS])
def test_layer_on_cuda_matches_cpu_reference(name):
    """The whole layer on CUDA (its kernel path) against the same weights on CPU (reference),
    forward and parameter gradients."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    layer = build(name)
    x = torch.randn(4, 64, 128)
    ref = layer(x)
    ref.square().mean().backward()
    ref_grads = [p.grad.clone() for p in layer.parameters() if p.grad is not None]
    gpu = build(name)
    gpu.load_state_dict(layer.state_dict())
    gpu = gpu.cuda()
    out = gpu(x.cuda())
    out.square().mean().backward()
    assert rel_err(out.cpu(), ref) < 1e-2
    grads = [p.grad.cpu() for p in gpu.parameters() if p.grad is not None]
    for a, b in zip(grads, ref_grads):
        assert rel_err(a, b) < 2e-2


@pytest.mark.parametrize("name", [n for n, _ in LAYERS])
def test_flop_formula_bounds_the_measured_count(name):
    """The analytic count (the chunked algorithm, projections included) is at least what
    FlopCounterMode measures (matrix products only) and within 15% of it."""
    from madbench.flops import layer_flops, measured_layer_flops
    analytic = layer_flops(name, 32, 32)
    measured = measured_layer_flops(name, 32, 32)
    assert analytic.method == "analytic"
    assert measured <= analytic.total <= 1.15 * measured


def test_rwkv7_initial_biases_survive_the_backbone_initialisation():
    """The language model zeroes linear biases (mad-lab's rule); RWKV-7's decay, learning-rate
    and value-residual biases are part of its initialisation and are kept."""
    model = LanguageModel(resolve_architecture("rwkv7-swiglu", dim=16), vocab_size=8)
    layer = model.encoder.blocks[0].mixer
    fresh = RWKV7(16)
    for name in ("w_lora", "a_lora", "v_lora"):
        torch.testing.assert_close(getattr(layer, name).up.bias, getattr(fresh, name).up.bias)
