"""flash-linear-attention (fla) layers as madbench sequence mixers: ``--arch fla.layers:NAME``
or ``--arch fla:NAME``.

fla's layers do not follow the mixer contract (``Cls(dim, **kwargs)``, ``forward(x) -> y``):
they are built with ``hidden_size=...`` and return ``(output, attentions, past_key_values)``;
a few deviate further. ``FlaMixer`` adapts one class:

- **construction**: ``hidden_size`` (or ``d_model``) is the model width; the rest comes from
  ``--mixer-kwargs``, over MAD-sized defaults (``mad_defaults``: heads of 16, no key or value
  expansion, small SSM states, so that two layers hold about the paper's 4,096 state where
  the class allows it). A keyword the class does not name is refused (fla's ``**kwargs``
  would swallow a typo silently). ``aux_loss_weight`` is the adapter's own (default 0.01).
- **calling conventions**: a bare tensor (Based) or a tuple whose first element is the output;
  RWKV-7 (``forward(..., v_first=...)``) returns ``v_first`` as a fourth element, which is
  threaded between the layers of one model through the per-forward context (the first
  RWKV-7 layer of a stack produces it; a layer run alone is a first layer); a fourth element
  that is a tensor of router logits (MoM) becomes a load-balancing auxiliary loss
  (``aux_loss``, added by the trainers). A required ``attention_mask`` gets None.
- **refusals**, each with a one-line reason: layers that need inputs besides the hidden
  states (YOCO's cross-attention over shared keys and values), layers whose output is not
  hidden states (YOCO's key-value builder), and layers whose kernels cannot run on the
  tensors' device (Triton-only layers on a machine without CUDA). A CUDA-only layer handed
  CPU tensors on a machine with a GPU (the checks run on CPU) runs on the GPU and returns CPU
  tensors, gradients included. On a Hopper GPU with 3.4.0 <= Triton < 3.7.1 and no usable
  tilelang, the classes whose training backward reaches fla's gated ``chunk_bwd_dqkwg``
  (``madbench.fla_guard.HOPPER_GUARDED``: GatedDeltaNet, GatedDeltaProduct, Comba, MomAttention,
  PrecondGatedDeltaNet, and the simple_gla ones) are refused when resolved or built, before
  any training: fla's own guard would raise at the first backward pass (fla #640; the fix is
  Triton >= 3.7.1 or tilelang). The condition mirrors fla's and is probed without a kernel.
- **float32**: some fla ops refuse float32 inputs ("... does not support float32": the
  chunked ops of DeltaNet, GatedDeltaProduct, MomentumDeltaNet; a TypeError asking for bf16 or
  fp16: Parallax, StickBreakingAttention). When one raises that on CUDA,
  the adapter runs the call again in bfloat16 (input cast, bf16 autocast, output cast back to
  the input dtype; gradients flow through both casts), and so from then on for that class in
  that mode (training or not, gradients on or not) at that sequence length. Nothing is cast up
  front: fla picks a recurrent op that accepts float32 on short sequences (DeltaNet up to 64
  positions; MomentumDeltaNet outside training), which lets the state audit measure those in
  float32. Under the trainer's bf16 autocast fla's projections already give the op bf16.
- **state**: declared (``state_size``, ``cache_size``) for the classes whose configuration
  determines it (``STATE_FORMULAS``); for the others it is unknown and ``madbench check``
  measures it.

Nothing here imports fla until an ``fla`` name is resolved.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MadbenchError, UsageError
from .fla_guard import hopper_guard_refusal, installed_fla_version
from .plugins import Entry

#: Names adapted here: ``fla:NAME`` (a class exported by ``fla.layers``) or ``fla.<module>:NAME``.
FLA_PREFIX = "fla"
#: Key of RWKV-7's v_first in the model's per-forward context (shared with the bundled rwkv7).
V_FIRST = "rwkv7.v_first"
#: Weight of a router's load-balancing loss (fla's MoM models use 0.01).
DEFAULT_AUX_LOSS_WEIGHT = 0.01
#: Width of a head in the MAD-sized defaults.
HEAD = 16

#: Classes that cannot fit the contract, and why.
REFUSED = {
    "YOCOCrossAttention": "cross-attention over the keys and values a YOCOSharedKVBuilder layer "
                          "shares (forward needs shared_k and shared_v): not a hidden-states "
                          "to hidden-states mixer",
    "YOCOSharedKVBuilder": "builds the keys and values YOCO's cross-attention layers share; it "
                           "returns (k, v), not hidden states",
}
#: Layers that also mix channels (gate and expansion, like Mamba): four of them make the
#: standard MAD model.
MIXES_CHANNELS = {"Mamba", "Mamba2", "Mamba3", "LogLinearMamba2"}


class FlaUnsupported(MadbenchError):
    """An fla layer that cannot run here (e.g. Triton kernels without CUDA)."""


def is_fla_name(name: str) -> bool:
    """``fla:NAME`` or ``fla.<module>:NAME``."""
    module, sep, attr = name.partition(":")
    return bool(sep and attr) and module.split(".")[0] == FLA_PREFIX


# -- constructor arguments ---------------------------------------------------------------------
def mad_defaults(class_name: str, dim: int) -> dict[str, Any]:
    """MAD-sized constructor defaults for an fla layer class at width ``dim`` (user kwargs win;
    keys the class does not take are dropped). Heads of 16 and no expansion make a matrix-state
    layer hold ``dim * 16`` (2,048 at width 128); SSM layers get d_state 4 (four layers)."""
    heads = max(1, dim // HEAD)
    generic = {"num_heads": heads, "head_dim": HEAD, "expand_k": 1.0, "expand_v": 1.0,
               "num_kv_heads": None}
    special = {
        "DeltaNet": {"num_heads": heads, "expand_k": 1.0, "expand_v": 1.0},
        "Mamba": {"state_size": 4, "intermediate_size": 2 * dim, "use_conv_bias": False},
        "Mamba2": {"num_heads": None, "head_dim": min(64, 2 * dim), "state_size": 4,
                   "expand": 2, "use_conv_bias": False, "chunk_size": 64},
        "Mamba3": {"state_size": 4, "head_dim": HEAD, "expand": 2},
        "LogLinearMamba2": {"num_heads": max(1, 2 * dim // 64), "head_dim": 64,
                            "state_size": 4, "expand": 2, "use_conv_bias": False},
        "RWKV7Attention": {"head_dim": HEAD, "num_heads": None},
        "RWKV6Attention": {"num_heads": heads, "expand_k": 1.0, "expand_v": 1.0},
        "HGRN2Attention": {"num_heads": heads, "expand_ratio": HEAD},
        "HGRNAttention": {"expand_ratio": 1},
        "BasedLinearAttention": {"num_heads": heads, "num_key_value_heads": heads,
                                 "feature_dim": HEAD},
        "ReBasedLinearAttention": {"num_heads": heads, "num_key_value_heads": heads,
                                   "feature_dim": HEAD},
        "MultiheadLatentAttention": {"num_heads": heads, "q_lora_rank": None,
                                     "kv_lora_rank": dim // 2, "qk_rope_head_dim": HEAD // 2,
                                     "qk_nope_head_dim": HEAD // 2, "qk_head_dim": HEAD,
                                     "v_head_dim": HEAD},
        "NativeSparseAttention": {"num_heads": heads, "num_kv_heads": 1, "head_dim": HEAD,
                                  "block_size": 16, "block_counts": 4, "window_size": 32},
        "MoBA": {"num_heads": heads, "moba_chunk_size": 16, "moba_topk": 2},
        "LightNetAttention": {"num_heads": heads, "expand_ratio": HEAD},
        "RodimusAttention": {"expand_ratio": HEAD},
        "SlidingWindowSharedKeyAttention": {"num_heads": heads, "window_size": 32},
    }
    return special.get(class_name, generic)


def _init_parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {n: p for n, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}, var_kw


def constructor_kwargs(cls: type, dim: int, kwargs: dict[str, Any],
                       convention: str = "tuple") -> dict[str, Any]:
    """The keyword arguments ``cls`` is built with at width ``dim``: ``hidden_size`` (or
    ``d_model``), then the MAD defaults it accepts, then ``kwargs`` (names it takes only). A
    v_first layer is built as a later layer (``layer_idx=1`` of ``num_hidden_layers=2``), so
    that it has its value-residual weights; the adapter runs it as layer 0 when it is first."""
    params, _ = _init_parameters(cls)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UsageError(f"fla.layers:{cls.__name__} takes no argument {', '.join(unknown)} "
                         f"(it takes: {', '.join(sorted(params))})")
    for width in ("hidden_size", "d_model"):
        if width in params:
            if width in kwargs and kwargs[width] != dim:
                raise UsageError(f"fla.layers:{cls.__name__}: {width} is the model width "
                                 f"({dim}); set it with the architecture's dim")
            built = {width: dim}
            break
    else:
        raise UsageError(f"fla.layers:{cls.__name__} takes no hidden_size: not a layer over "
                         "hidden states")
    defaults = mad_defaults(cls.__name__, dim)
    if convention == "v_first":
        defaults.update(layer_idx=1, num_hidden_layers=2)
    built.update({k: v for k, v in defaults.items() if k in params})
    built.update(kwargs)
    return built


# -- state ---------------------------------------------------------------------------------------
def _short_conv_cache(m: nn.Module) -> int:
    if not getattr(m, "use_short_conv", False):
        return 0
    key_dim, value_dim = int(m.key_dim), int(m.value_dim)
    return (2 * key_dim + value_dim) * (int(m.conv_size) - 1)


def _matrix_state(m: nn.Module, L: int) -> int:
    heads = getattr(m, "num_v_heads", None) or m.num_heads
    return int(heads) * int(m.head_k_dim) * int(m.head_v_dim)


def _attention_state(m: nn.Module, L: int) -> int:
    window = getattr(m, "window_size", None)
    keys = L if window is None else min(L, int(window))
    kv_heads = getattr(m, "num_kv_heads", None) or m.num_heads
    return 2 * int(kv_heads) * int(m.head_dim) * keys


#: class name -> (state(layer, seq_len), cache(layer, seq_len)), where fla's layer configuration
#: determines the recurrent state (the audit checks every declaration; the rest it measures).
STATE_FORMULAS: dict[str, tuple[Callable[[nn.Module, int], int], Callable[[nn.Module, int], int]]] = {
    "DeltaNet": (_matrix_state, lambda m, L: _short_conv_cache(m)),
    "GatedDeltaNet": (_matrix_state, lambda m, L: _short_conv_cache(m)),
    "GatedLinearAttention": (_matrix_state, lambda m, L: _short_conv_cache(m)),
    "MultiScaleRetention": (_matrix_state, lambda m, L: _short_conv_cache(m)),
    "Mamba2": (lambda m, L: int(m.num_heads) * int(m.head_dim) * int(m.ssm_state_size),
               lambda m, L: int(m.conv_dim) * (int(m.conv_kernel_size) - 1)),
    "RWKV7Attention": (lambda m, L: int(m.num_heads) * int(m.head_dim) * int(m.head_v_dim),
                       lambda m, L: int(m.hidden_size)),
    "Attention": (_attention_state, lambda m, L: 0),
}


# -- calling conventions -------------------------------------------------------------------------
def calling_convention(cls: type) -> tuple[str, set[str]]:
    """("tuple" | "v_first", required keyword arguments to pass as None) for ``cls.forward``;
    raises FlaUnsupported for a layer that needs other inputs."""
    if cls.__name__ in REFUSED:
        raise FlaUnsupported(f"fla.layers:{cls.__name__} is refused: {REFUSED[cls.__name__]}")
    params = list(inspect.signature(cls.forward).parameters.values())[1:]  # skip self
    if not params:
        raise FlaUnsupported(f"fla.layers:{cls.__name__} is refused: its forward takes no "
                             "hidden states")
    required = {p.name for p in params[1:] if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    other = required - {"attention_mask"}
    if other:
        raise FlaUnsupported(f"fla.layers:{cls.__name__} is refused: its forward needs "
                             f"{', '.join(sorted(other))} besides the hidden states")
    names = {p.name for p in params}
    return ("v_first" if "v_first" in names else "tuple"), required


def load_balancing_loss(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Switch-Transformer load balancing over tokens: ``E * sum_e f_e * P_e`` with ``f_e`` the
    fraction of the top-k assignments that go to expert e and ``P_e`` its mean router
    probability (1 when the routing is uniform)."""
    logits = router_logits.reshape(-1, router_logits.shape[-1]).float()
    experts = logits.shape[-1]
    probs = logits.softmax(-1)
    chosen = F.one_hot(probs.topk(min(top_k, experts), dim=-1).indices, experts).sum(1)
    fraction = chosen.float().mean(0) / max(1, min(top_k, experts))
    return experts * (fraction * probs.mean(0)).sum()


# -- fla ops that refuse float32 -----------------------------------------------------------------
#: How fla 0.6.0's ops refuse float32 inputs: the assertion of ``chunk_delta_rule``,
#: ``chunk_gated_delta_product`` and ``chunk_momentum_delta_rule`` ("... does not support
#: float32. Please use bfloat16."), and the TypeErrors of ``parallel_parallax`` ("requires bf16
#: or fp16 inputs") and stick-breaking attention ("require matching fp16/bf16 tensors").
FP32_REFUSALS = ("does not support float32", "requires bf16 or fp16", "require matching fp16/bf16")
#: (fla class, training, gradients on, sequence length) whose call refused float32
#: (``FP32_REFUSALS``): run in bfloat16 from then on (fla picks its op by these, so only that combination).
_FP32_REFUSING: set = set()


def _kernel_device(device: torch.device) -> bool:
    """Whether fla's kernels run on tensors of ``device`` (CUDA): the bf16 cast applies there."""
    return device.type == "cuda"


# -- the adapter ---------------------------------------------------------------------------------
_CPU_FAILURES: dict[tuple, str] = {}   #: (fla class, dtype) that failed on CPU, and why


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class FlaMixer(nn.Module):
    """An fla layer as a madbench sequence mixer: ``FlaMixer(dim, **kwargs)``, ``forward(x)``
    maps (batch, seq_len, dim) to the same shape. Subclassed once per fla class
    (``adapter_class``); ``layer_class`` is the fla class."""

    layer_class: type = nn.Module
    fla_version: str = "unknown"

    def __init__(self, dim: int, aux_loss_weight: float = DEFAULT_AUX_LOSS_WEIGHT, **kwargs):
        super().__init__()
        cls = self.layer_class
        self.convention, self.none_kwargs = calling_convention(cls)
        self.layer_kwargs = constructor_kwargs(cls, dim, kwargs, self.convention)
        try:
            self.layer = cls(**self.layer_kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. a missing flash-attn; one line
            raise FlaUnsupported(f"fla.layers:{cls.__name__} cannot be built with "
                                 f"{self.layer_kwargs}: {_one_line(exc)}") from None
        refusal = hopper_guard_refusal(cls, self.layer)
        if refusal is not None:
            raise FlaUnsupported(refusal)
        self.dim, self.aux_loss_weight = dim, aux_loss_weight
        self.uses_context = self.convention == "v_first"
        self.returns_aux_loss = hasattr(self.layer, "num_memories") or hasattr(
            self.layer, "num_experts")
        self.aux_loss: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return f"fla.layers:{self.layer_class.__name__}"

    # running the fla layer, on the GPU when its kernels need one
    def _run(self, x: torch.Tensor, kwargs: dict):
        key = (self.layer_class, x.dtype)   # a layer may fail on CPU in float64 only
        if x.device.type == "cpu" and key in _CPU_FAILURES:
            return self._run_on_cuda(x, kwargs, _CPU_FAILURES[key])
        try:
            return self._call(self.layer, x, kwargs)
        except Exception as exc:  # noqa: BLE001 - Triton without a driver, fp64 kernels, ...
            if x.device.type != "cpu":
                raise
            _CPU_FAILURES[key] = _one_line(exc)
            return self._run_on_cuda(x, kwargs, _CPU_FAILURES[key])

    def _run_on_cuda(self, x: torch.Tensor, kwargs: dict, reason: str):
        if not torch.cuda.is_available():
            raise FlaUnsupported(f"{self.name} does not run on CPU ({reason}); it needs a CUDA "
                                 "device") from None
        if x.dtype == torch.float64:   # the checks try float64 first, then float32
            raise FlaUnsupported(f"{self.name} runs Triton kernels, which madbench does not "
                                 "run in float64")
        from torch.func import functional_call
        device = torch.device("cuda")
        tensors = {n: t.to(device) for n, t in self.layer.named_parameters()}
        tensors.update({n: t.to(device) for n, t in self.layer.named_buffers()})
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        out = self._call(lambda h, **kw: functional_call(self.layer, tensors, (h,), kw),
                         x.to(device), moved)
        if torch.is_tensor(out):
            return out.to(x.device)
        return tuple(o.to(x.device) if torch.is_tensor(o) else o for o in out)

    def _fp32_key(self, x: torch.Tensor) -> tuple:
        """What fla picks its op by: the class, training or not, gradients on or not, length."""
        return (self.layer_class, self.layer.training, torch.is_grad_enabled(),
                x.shape[1] if x.dim() > 1 else 0)

    def casts_to_bf16(self, x: torch.Tensor) -> bool:
        """Whether the layer runs in bfloat16 on ``x``: float32 on a kernel device outside an
        autocast, where this class's op refused float32 before in this mode (training,
        gradients) at this length."""
        if (x.dtype != torch.float32 or not _kernel_device(x.device)
                or torch.is_autocast_enabled(x.device.type)):   # an outer autocast decides
            return False
        return self._fp32_key(x) in _FP32_REFUSING

    def _call(self, fn: Callable, x: torch.Tensor, kwargs: dict):
        """``fn(x, **kwargs)``; in bfloat16 (input cast, bf16 autocast) when ``casts_to_bf16``,
        and again so when fla's op first refuses float32 (``FP32_REFUSALS``)."""
        if not self.casts_to_bf16(x):
            try:
                return fn(x, **kwargs)
            except (AssertionError, TypeError) as exc:
                refuses = any(text in str(exc) for text in FP32_REFUSALS)
                if not (refuses and x.dtype == torch.float32 and _kernel_device(x.device)):
                    raise
            _FP32_REFUSING.add(self._fp32_key(x))
        with torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled=False):
            return fn(x.to(torch.bfloat16), **kwargs)

    def forward(self, x: torch.Tensor, context: dict | None = None) -> torch.Tensor:
        kwargs: dict[str, Any] = {name: None for name in self.none_kwargs}
        first = True
        if self.convention == "v_first":
            first = context is None or V_FIRST not in context
            if not first:
                kwargs["v_first"] = context[V_FIRST]
        restore = None
        if self.convention == "v_first" and first and hasattr(self.layer, "layer_idx"):
            restore, self.layer.layer_idx = self.layer.layer_idx, 0   # fla: layer 0 makes v_first
        try:
            out = self._run(x, kwargs)
        finally:
            if restore is not None:
                self.layer.layer_idx = restore
        extras: tuple = ()
        if isinstance(out, (tuple, list)):
            out, extras = out[0], tuple(out[1:])
        if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise FlaUnsupported(f"{self.name} is refused: it returns {shape} for hidden states "
                                 f"of shape {tuple(x.shape)}")
        if self.convention == "v_first" and first and context is not None and len(extras) >= 3:
            context[V_FIRST] = extras[2]
        self.aux_loss = None
        if (self.convention != "v_first" and len(extras) >= 3 and torch.is_tensor(extras[2])
                and self.training and torch.is_grad_enabled() and self.aux_loss_weight):
            top_k = int(getattr(self.layer, "topk", getattr(self.layer, "top_k", 1)))
            self.aux_loss = self.aux_loss_weight * load_balancing_loss(extras[2], top_k)
        return out.to(x.dtype)


class FlaMixerWithState(FlaMixer):
    """An adapted fla layer whose state its configuration determines (``STATE_FORMULAS``)."""

    def state_size(self, seq_len: int) -> int:
        return STATE_FORMULAS[self.layer_class.__name__][0](self.layer, seq_len)

    def cache_size(self, seq_len: int) -> int:
        return STATE_FORMULAS[self.layer_class.__name__][1](self.layer, seq_len)


@functools.lru_cache(maxsize=None)
def adapter_class(layer_class: type, version: str = "unknown") -> type:
    """The FlaMixer subclass for one fla layer class (one per class, so that accounting,
    hashing and FLOP counting see a class of their own)."""
    base = FlaMixerWithState if layer_class.__name__ in STATE_FORMULAS else FlaMixer
    name = f"Fla{layer_class.__name__}"
    return type(name, (base,), {"layer_class": layer_class, "fla_version": version,
                                "__module__": __name__,
                                "__qualname__": f"{name}[fla-{version}]",
                                "__doc__": f"fla's {layer_class.__name__} as a madbench mixer "
                                           f"(fla {version})."})


def import_fla(module_name: str = "fla.layers"):
    """Import an fla module. fla's package ``__init__`` also imports ``fla.models`` (its
    Hugging Face model zoo), which needs transformers >= 5.6.2 while the layers and ops need
    only ``transformers.utils.logging``; when that import fails, ``fla.models`` is replaced by
    an empty package (its submodules stay importable) and the import is retried."""
    import sys
    import types
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        spec = importlib.util.find_spec("fla")
        if spec is None or "fla.models" in sys.modules or not spec.submodule_search_locations:
            raise
        first = exc
    stub = types.ModuleType("fla.models")
    stub.__path__ = [f"{list(spec.submodule_search_locations)[0]}/models"]
    stub.__all__ = []
    sys.modules["fla.models"] = stub
    try:
        return importlib.import_module(module_name)
    except ImportError:
        del sys.modules["fla.models"]
        raise first from None


def import_fla_class(name: str) -> type:
    """The fla class named by ``fla:NAME`` or ``fla.<module>:NAME``."""
    module_name, _, attr = name.partition(":")
    if module_name == FLA_PREFIX:
        module_name = "fla.layers"
    try:
        module = import_fla(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == FLA_PREFIX and module_name.startswith("fla"):
            if importlib.util.find_spec("fla") is None:
                raise UsageError(f"{name!r} needs flash-linear-attention: pip install "
                                 "'madbench[fla]'") from None
        raise UsageError(f"cannot import {module_name!r} for {name!r}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. fla without its transformers dependency
        raise UsageError(f"cannot import {module_name!r} for {name!r}: {_one_line(exc)}") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"{module_name!r} has no layer class {attr!r}")
    return cls


def fla_version() -> str:
    """The installed fla's version: its distribution metadata, else the package's own."""
    try:
        return installed_fla_version() or import_fla("fla").__version__
    except Exception:  # noqa: BLE001
        return "unknown"


@functools.lru_cache(maxsize=None)
def fla_entry(name: str):
    """The registry entry for ``fla:NAME`` / ``fla.<module>:NAME``: the adapter class, with
    ``kind``, ``mixes_channels`` and a description. Refused classes raise UsageError here."""
    cls = import_fla_class(name)
    try:
        calling_convention(cls)
    except FlaUnsupported as exc:
        raise UsageError(str(exc)) from None
    refusal = hopper_guard_refusal(cls)
    if refusal is not None:
        raise UsageError(refusal)
    adapter = adapter_class(cls, fla_version())
    return Entry(name, adapter, plugin="fla", metadata={
        "kind": "sequence", "mixes_channels": cls.__name__ in MIXES_CHANNELS,
        "description": f"fla's {cls.__name__} through madbench's fla adapter",
        "fla_class": f"{cls.__module__}:{cls.__qualname__}"})


def class_names() -> list[str]:
    """Every layer class ``fla.layers`` exports."""
    module = import_fla("fla.layers")
    return sorted(n for n in getattr(module, "__all__", dir(module))
                  if isinstance(getattr(module, n, None), type)
                  and issubclass(getattr(module, n), nn.Module))


__all__ = ["FlaMixer", "FlaUnsupported", "adapter_class", "fla_entry", "is_fla_name", "import_fla",
           "calling_convention", "constructor_kwargs", "mad_defaults", "load_balancing_loss",
           "STATE_FORMULAS", "REFUSED", "class_names"]
