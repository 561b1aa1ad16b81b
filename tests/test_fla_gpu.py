"""GPU tests with flash-linear-attention installed (skipped elsewhere): the bundled DeltaNet,
Gated DeltaNet, Mamba-2 and RWKV-7 against fla's own layers with the same weights (fidelity of
the re-implementation), and the adapter around real fla classes (output unpacking, v_first,
the CPU-tensor bridge the checks use)."""
import pytest
import torch

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)
try:
    from madbench.fla_adapter import import_fla
    fla_layers = import_fla("fla.layers")
except ImportError as exc:
    pytest.skip(f"needs flash-linear-attention ({exc})", allow_module_level=True)

from madbench.architecture import LayerSpec, build_mixer, resolve_architecture  # noqa: E402
from madbench.checks import audit_state, check_causality  # noqa: E402
from madbench.model import LanguageModel  # noqa: E402
from madbench.plugins import get_registry  # noqa: E402

DIM, DEV = 128, "cuda"


def ours(name, **kwargs):
    entry = get_registry().mixers[name]
    return entry.obj(DIM, **kwargs).to(DEV)


def copy_(dst, src):
    with torch.no_grad():
        assert dst.shape == src.shape, (dst.shape, src.shape)
        dst.copy_(src)


def close(a, b, tol=1e-2):
    scale = float(b.abs().max())
    err = float((a.float() - b.float()).abs().max()) / max(scale, 1e-6)
    assert err < tol, f"relative error {err:.2e}"


@pytest.mark.parametrize("gated", [False, True])
def test_deltanet_matches_fla(gated):
    torch.manual_seed(0)
    if gated:
        theirs = fla_layers.GatedDeltaNet(hidden_size=DIM, head_dim=16, num_heads=8,
                                          expand_v=1).to(DEV)
        mine = ours("gated-deltanet")
    else:   # fla's chunk_delta_rule asserts 16-bit inputs; its recurrent kernel takes float32
        theirs = fla_layers.DeltaNet(hidden_size=DIM, num_heads=8, expand_k=1, expand_v=1,
                                     mode="fused_recurrent").to(DEV)
        mine = ours("deltanet")
    for n in ("q_proj", "k_proj", "v_proj", "b_proj", "o_proj") + (("a_proj", "g_proj") if gated else ()):
        copy_(getattr(mine, n).weight, getattr(theirs, n).weight)
    for c in "qkv":
        copy_(getattr(mine, f"{c}_conv").weight, getattr(theirs, f"{c}_conv1d").weight)
    copy_(mine.norm_weight, theirs.o_norm.weight)
    if gated:
        copy_(mine.A_log, theirs.A_log)
        copy_(mine.dt_bias, theirs.dt_bias)
    x = torch.randn(2, 100, DIM, device=DEV)
    close(mine(x), theirs(x)[0])


def test_mamba2_matches_fla():
    torch.manual_seed(0)
    theirs = fla_layers.Mamba2(hidden_size=DIM, state_size=4, head_dim=64, expand=2,
                               use_conv_bias=False, chunk_size=64).to(DEV)
    mine = ours("mamba2")
    copy_(mine.in_proj.weight, theirs.in_proj.weight)
    copy_(mine.conv.weight, theirs.conv1d.weight)
    for n in ("A_log", "dt_bias", "D"):
        copy_(getattr(mine, n), getattr(theirs, n))
    copy_(mine.norm_weight, theirs.norm.weight)
    copy_(mine.out_proj.weight, theirs.out_proj.weight)
    x = torch.randn(2, 100, DIM, device=DEV)
    close(mine(x), theirs(x)[0])


@pytest.mark.parametrize("first", [True, False])
def test_rwkv7_matches_fla(first):
    torch.manual_seed(0)
    theirs = fla_layers.RWKV7Attention(hidden_size=DIM, head_dim=16, decay_low_rank_dim=32,
                                       a_low_rank_dim=32, v_low_rank_dim=32,
                                       gate_low_rank_dim=64, layer_idx=0 if first else 1,
                                       num_hidden_layers=2).to(DEV)
    mine = ours("rwkv7")
    for i, n in enumerate(("x_r", "x_w", "x_k", "x_v", "x_a", "x_g")):
        copy_(mine.mu[i], getattr(theirs, n).view(-1))
    for n in ("k_k", "k_a", "r_k"):
        copy_(getattr(mine, n), getattr(theirs, n))
    for n in ("r_proj", "k_proj", "v_proj", "o_proj"):
        copy_(getattr(mine, n).weight, getattr(theirs, n).weight)
    loras = ("w_lora", "a_lora", "g_lora") + (() if first else ("v_lora",))
    for n in loras:
        copy_(getattr(mine, n).down.weight, getattr(theirs, n).lora[0].weight)
        copy_(getattr(mine, n).up.weight, getattr(theirs, n).lora[2].weight)
        if getattr(theirs, n).lora[2].bias is not None:
            copy_(getattr(mine, n).up.bias, getattr(theirs, n).lora[2].bias)
    copy_(mine.g_norm.weight, theirs.g_norm.weight)
    copy_(mine.g_norm.bias, theirs.g_norm.bias)
    with torch.no_grad():
        mine.o_proj.weight.normal_(0, 0.05)   # fla zeroes it at initialisation
        theirs.o_proj.weight.copy_(mine.o_proj.weight)
    x = torch.randn(2, 100, DIM, device=DEV)
    if first:
        close(mine(x), theirs(x)[0])
    else:
        v_first = torch.randn(2, 100, DIM, device=DEV)
        close(mine(x, context={"rwkv7.v_first": v_first}), theirs(x, v_first=v_first)[0])


def test_adapter_unpacks_real_gated_deltanet_and_bridges_cpu_tensors():
    from madbench.errors import UsageError
    from madbench.fla_guard import hopper_guard
    if hopper_guard() is not None:   # fla's Hopper/Triton guard: refused before any training
        with pytest.raises(UsageError, match="Triton >= 3.7.1 or tilelang"):
            build_mixer(LayerSpec("fla.layers:GatedDeltaNet"), DIM)
        pytest.skip(hopper_guard())
    torch.manual_seed(0)
    layer = build_mixer(LayerSpec("fla.layers:GatedDeltaNet"), DIM).to(DEV)
    assert (layer.layer.num_heads, layer.layer.head_k_dim, layer.layer.head_v_dim) == (8, 16, 16)
    assert layer.state_size(128) == 2048
    x = torch.randn(2, 50, DIM, device=DEV)
    close(layer(x), layer.layer(x)[0], 1e-5)
    result = check_causality(build_mixer(LayerSpec("fla:GatedDeltaNet"), 32), 32, 16)
    assert result.causal and result.dtype == "float32"
    audit = audit_state(lambda d: build_mixer(LayerSpec("fla:GatedDeltaNet"), d), 16)
    # meaningful with TRITON_F32_DEFAULT=ieee (benchmarks/fla_gpu.sh): TF32 noise is rank
    assert audit.ok, audit.message


def test_adapter_threads_v_first_through_real_rwkv7():
    torch.manual_seed(0)
    model = LanguageModel(resolve_architecture("fla:RWKV7Attention", dim=64), 16).to(DEV)
    logits = model(torch.randint(0, 16, (2, 40), device=DEV))
    logits.float().square().mean().backward()
    assert torch.isfinite(logits).all()


def test_adapter_runs_float32_refusing_deltanet_in_bf16():
    """fla's DeltaNet asserts 16-bit inputs in chunk mode (L > 64): handed float32, the adapter
    runs it in bf16 and returns float32, gradients included."""
    torch.manual_seed(0)
    layer = build_mixer(LayerSpec("fla.layers:DeltaNet"), DIM).to(DEV)
    x = torch.randn(2, 100, DIM, device=DEV, requires_grad=True)
    y = layer(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
