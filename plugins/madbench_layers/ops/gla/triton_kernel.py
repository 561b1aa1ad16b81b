"""Gated linear attention in Triton: chunked forward and backward, as a registered custom operator.

One program walks the chunks of one (batch, head) in order, holding a block of the state
``S`` (dk x dv, fp32) in registers. Per chunk of ``BT`` steps, with ``b`` the log decays
cumulated from the chunk start (``b_t <= 0``, ``b_last`` the chunk's total):

- across chunks: ``o = (q * exp(b)) S + ...`` and
  ``S <- diag(exp(b_last)) S + (k * exp(b_last - b))^T v``: every exponent is <= 0;
- inside the chunk: ``A[t, s] = sum_d q_td k_sd exp(b_td - b_sd)`` for ``s <= t``, as one
  matrix product ``(q * exp(b - m)) (k * exp(m - b))^T`` with ``m = b_last / 2`` per channel.
  Both factors lie in ``[exp(-|b_last| / 2), exp(|b_last| / 2)]``, so the product is safe while
  the chunk decays by less than ``max_spread`` (120: factors within e^+-60) in every channel.
  A chunk that forgets faster (with MAD's ``log_alpha = logsigmoid(x) / 16`` and 32-step
  chunks: gate logits below about -60 throughout the chunk) takes an exact column-by-column
  path that only exponentiates ``b_t - b_s <= 0``.

The forward pass saves the state entering each chunk (fp32, chunks x dk x dv per (batch,
head), when a gradient is needed). The backward pass is one reverse sweep: ``dq`` from the
saved state, ``dk`` and ``dv`` from ``dS`` (the gradient of the state leaving the chunk)
carried backwards, the in-chunk terms recomputed. The gate gradient follows from
``d loss / d b_t = q_t dq_t - k_t dk_t`` cumulated from the end of the sequence.

Tensors are read and written token-major, (batch, seq_len, heads, d) memory viewed as (batch,
heads, seq_len, d), as the layer's projections make them. Large heads are split into blocks of
dk (backward) and dv (both passes) over the grid; the partial results are summed with torch.
Block sizes come from ``launch_config``, one fixed config per head shape (no autotuning), so
the interpreter (``TRITON_INTERPRET=1``) runs the same code as the GPU. tl.dot runs in TF32x3
(about fp32 accuracy) unless PyTorch's fp32 matmul precision allows TF32 (``dot_precision``).
"""
from __future__ import annotations

import json
import os

import torch
import triton
import triton.language as tl


def _next_pow2(n: int, least: int = 16) -> int:
    return max(least, triton.next_power_of_2(n))


def dot_precision() -> str:
    """tl.dot input precision: ``MADBENCH_GLA_DOT_PRECISION`` if set, else as PyTorch's fp32
    matmuls: "tf32" when ``torch.set_float32_matmul_precision`` allows TF32 ("high" or
    "medium"), else "tf32x3" (three TF32 products, about fp32 accuracy)."""
    forced = os.environ.get("MADBENCH_GLA_DOT_PRECISION")
    if forced:
        return forced
    return "tf32x3" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def launch_config(dk: int, dv: int) -> dict:
    """Launch parameters for one head shape: chunk length ``BT``; forward dv block ``BV_FWD``
    (the forward holds all of dk); backward dk and dv blocks ``BK_BWD`` and ``BV_BWD``; warps
    per program; tl.dot input precision; the largest in-chunk decay ``max_spread`` (in log
    space) handled by the matrix-product path. Chosen from H100 timings at batch 128
    (benchmarks/bench_kernel_gla.py --sweep). Small heads run 2 warps: at 8 warps Triton 3.6
    gave wrong results for 16-wide heads."""
    precision = dot_precision()
    if dk <= 32 and dv <= 32:
        return {"BT": 32, "BV_FWD": _next_pow2(dv), "BK_BWD": _next_pow2(dk),
                "BV_BWD": _next_pow2(dv), "num_warps": 2, "precision": precision,
                "max_spread": 120.0}
    return {"BT": 16, "BV_FWD": 64 if precision == "tf32" else 32, "BK_BWD": 32,
            "BV_BWD": 128, "num_warps": 4, "precision": precision, "max_spread": 120.0}


@triton.jit
def _tile(base, stride_t, offs_t, offs_c, mask_t, mask_c):
    """Load a (time, channel) tile as fp32; channels are contiguous."""
    x = tl.load(base + offs_t[:, None] * stride_t + offs_c[None, :],
                mask=mask_t[:, None] & mask_c[None, :], other=0.0)
    return tl.cast(x, tl.float32)


@triton.jit
def _store(base, stride_t, offs_t, offs_c, mask_t, mask_c, x):
    tl.store(base + offs_t[:, None] * stride_t + offs_c[None, :],
             tl.cast(x, base.dtype.element_ty), mask=mask_t[:, None] & mask_c[None, :])


@triton.jit
def _row(x, offs_s, s):
    """Row s of a (time, channel) tile."""
    return tl.sum(tl.where(offs_s[:, None] == s, x, 0.0), axis=0)


@triton.jit
def _col(x, offs_s, s):
    """Column s of a (time, time) tile."""
    return tl.sum(tl.where(offs_s[None, :] == s, x, 0.0), axis=1)


@triton.jit
def _decay_from(b, b_s, offs_s, s):
    """exp(b_t - b_s) for t >= s, else 0: a (time, channel) tile of values in [0, 1]."""
    return tl.exp(tl.where(offs_s[:, None] >= s, b - b_s[None, :], float("-inf")))


@triton.jit
def _scores(q, k, b, b_last, offs_s, BT: tl.constexpr, MAX_SPREAD: tl.constexpr,
            PRECISION: tl.constexpr):
    """A[t, s] = sum_d q_td k_sd exp(b_td - b_sd) for s <= t, else 0."""
    if -tl.min(b_last, axis=0) <= MAX_SPREAD:
        mid = 0.5 * b_last[None, :]
        a = tl.dot(q * tl.exp(b - mid), tl.trans(k * tl.exp(mid - b)), input_precision=PRECISION)
        a = tl.where(offs_s[:, None] >= offs_s[None, :], a, 0.0)
    else:
        a = tl.zeros([BT, BT], dtype=tl.float32)
        for s in range(BT):
            col = tl.sum(q * _row(k, offs_s, s)[None, :] * _decay_from(b, _row(b, offs_s, s),
                                                                       offs_s, s), axis=1)
            a += tl.where(offs_s[None, :] == s, col[:, None], 0.0)
    return a


@triton.jit
def _intra_backward(q, k, b, b_last, d_scores, offs_s, BT: tl.constexpr,
                    MAX_SPREAD: tl.constexpr, PRECISION: tl.constexpr):
    """Inside one chunk, with dA = d loss / d A: the scores A (as ``_scores``) and
    dq_td = sum_{s <= t} dA[t, s] k_sd exp(b_td - b_sd),
    dk_sd = sum_{t >= s} dA[t, s] q_td exp(b_td - b_sd)."""
    causal = offs_s[:, None] >= offs_s[None, :]
    if -tl.min(b_last, axis=0) <= MAX_SPREAD:
        mid = 0.5 * b_last[None, :]
        q_mid = q * tl.exp(b - mid)
        k_mid = k * tl.exp(mid - b)
        scores = tl.where(causal, tl.dot(q_mid, tl.trans(k_mid), input_precision=PRECISION), 0.0)
        d_scores = tl.where(causal, d_scores, 0.0)
        dq = tl.dot(d_scores, k_mid, input_precision=PRECISION) * tl.exp(b - mid)
        dk = tl.dot(tl.trans(d_scores), q_mid, input_precision=PRECISION) * tl.exp(mid - b)
    else:
        scores = tl.zeros([BT, BT], dtype=tl.float32)
        dq = tl.zeros_like(q)
        dk = tl.zeros_like(k)
        for s in range(BT):
            k_s = _row(k, offs_s, s)
            decay = _decay_from(b, _row(b, offs_s, s), offs_s, s)
            d_col = _col(d_scores, offs_s, s)[:, None]
            col = tl.sum(q * k_s[None, :] * decay, axis=1)
            scores += tl.where(offs_s[None, :] == s, col[:, None], 0.0)
            dq += d_col * k_s[None, :] * decay
            row = tl.sum(d_col * q * decay, axis=0)
            dk += tl.where(offs_s[:, None] == s, row[None, :], 0.0)
    return scores, dq, dk


@triton.jit
def _gla_fwd_kernel(q_ptr, k_ptr, v_ptr, g_ptr, o_ptr, h_ptr, T, H, DK, DV,
                    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                    STORE_STATES: tl.constexpr, MAX_SPREAD: tl.constexpr,
                    PRECISION: tl.constexpr):
    """o for one (batch, head) and one dv block; with STORE_STATES, also the state entering
    each chunk, h[batch * head, chunk] (dk x dv, fp32), for the backward pass."""
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    # (batch, seq_len, heads, channels) memory: (batch, head) starts at (b T H + h) channels
    first = (tl.cast(i_bh // H, tl.int64) * T * H + tl.cast(i_bh % H, tl.int64))
    q_base = q_ptr + first * DK
    k_base = k_ptr + first * DK
    v_base = v_ptr + first * DV
    g_base = g_ptr + first * DK
    o_base = o_ptr + first * DV
    sk = H * DK  # time strides
    sv = H * DV

    offs_s = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k = offs_k < DK
    mask_v = offs_v < DV

    num_chunks = tl.cdiv(T, BT)
    h_base = h_ptr + tl.cast(i_bh, tl.int64) * num_chunks * DK * DV
    h_offs = offs_k[:, None] * DV + offs_v[None, :]
    h_mask = mask_k[:, None] & mask_v[None, :]

    state = tl.zeros([BK, BV], dtype=tl.float32)
    for i_t in range(0, num_chunks):
        if STORE_STATES:
            tl.store(h_base + i_t * DK * DV + h_offs, state, mask=h_mask)
        offs_t = i_t * BT + offs_s
        mask_t = offs_t < T
        q = _tile(q_base, sk, offs_t, offs_k, mask_t, mask_k)
        k = _tile(k_base, sk, offs_t, offs_k, mask_t, mask_k)
        g = _tile(g_base, sk, offs_t, offs_k, mask_t, mask_k)
        v = _tile(v_base, sv, offs_t, offs_v, mask_t, mask_v)
        b = tl.cumsum(g, axis=0)
        b_last = tl.sum(g, axis=0)
        scores = _scores(q, k, b, b_last, offs_s, BT, MAX_SPREAD, PRECISION)
        o = tl.dot(scores, v, input_precision=PRECISION)
        o += tl.dot(q * tl.exp(b), state, input_precision=PRECISION)
        _store(o_base, sv, offs_t, offs_v, mask_t, mask_v, o)
        k_to_end = k * tl.exp(b_last[None, :] - b)
        state = state * tl.exp(b_last)[:, None] \
            + tl.dot(tl.trans(k_to_end), v, input_precision=PRECISION)


@triton.jit
def _gla_bwd_kernel(q_ptr, k_ptr, v_ptr, g_ptr, h_ptr, do_ptr,
                    dq_ptr, dk_ptr, dv_ptr, dg_ptr, B, T, H, DK, DV,
                    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
                    FUSE_DG: tl.constexpr, MAX_SPREAD: tl.constexpr,
                    PRECISION: tl.constexpr):
    """One reverse sweep over the chunks of one (batch, head), for one (dk, dv) block: dq
    from the saved state entering the chunk, dk and dv from dS, the gradient of the state
    leaving it, carried backwards."""
    i_bh = tl.program_id(0)
    i_kv = tl.program_id(1)
    i_k = i_kv // NV
    i_v = i_kv % NV
    # (batch, seq_len, heads, channels) memory: (batch, head) starts at (b T H + h) channels
    first = (tl.cast(i_bh // H, tl.int64) * T * H + tl.cast(i_bh % H, tl.int64))
    q_base = q_ptr + first * DK
    k_base = k_ptr + first * DK
    v_base = v_ptr + first * DV
    g_base = g_ptr + first * DK
    do_base = do_ptr + first * DV
    # partial gradients, (split, batch, seq_len, heads, channels): dq and dk summed over dv
    # blocks, dv over dk blocks (split 0 only when unsplit)
    size = tl.cast(B, tl.int64) * T * H
    dq_base = dq_ptr + (tl.cast(i_v, tl.int64) * size + first) * DK
    dk_base = dk_ptr + (tl.cast(i_v, tl.int64) * size + first) * DK
    dv_base = dv_ptr + (tl.cast(i_k, tl.int64) * size + first) * DV
    dg_base = dg_ptr + first * DK
    sk = H * DK  # time strides
    sv = H * DV

    offs_s = tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k = offs_k < DK
    mask_v = offs_v < DV
    num_chunks = tl.cdiv(T, BT)
    h_base = h_ptr + tl.cast(i_bh, tl.int64) * num_chunks * DK * DV
    h_offs = offs_k[:, None] * DV + offs_v[None, :]
    h_mask = mask_k[:, None] & mask_v[None, :]

    d_state = tl.zeros([BK, BV], dtype=tl.float32)
    d_b_after = tl.zeros([BK], dtype=tl.float32)
    for i_r in range(0, num_chunks):
        i_t = num_chunks - 1 - i_r
        offs_t = i_t * BT + offs_s
        mask_t = offs_t < T
        q = _tile(q_base, sk, offs_t, offs_k, mask_t, mask_k)
        k = _tile(k_base, sk, offs_t, offs_k, mask_t, mask_k)
        g = _tile(g_base, sk, offs_t, offs_k, mask_t, mask_k)
        v = _tile(v_base, sv, offs_t, offs_v, mask_t, mask_v)
        do = _tile(do_base, sv, offs_t, offs_v, mask_t, mask_v)
        state = tl.load(h_base + i_t * DK * DV + h_offs, mask=h_mask, other=0.0)
        b = tl.cumsum(g, axis=0)
        b_last = tl.sum(g, axis=0)
        to_end = tl.exp(b_last[None, :] - b)
        d_scores = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        scores, dq, dk = _intra_backward(q, k, b, b_last, d_scores, offs_s, BT, MAX_SPREAD,
                                         PRECISION)
        dq += tl.dot(do, tl.trans(state), input_precision=PRECISION) * tl.exp(b)
        dk += tl.dot(v, tl.trans(d_state), input_precision=PRECISION) * to_end
        dv = tl.dot(tl.trans(scores), do, input_precision=PRECISION)
        dv += tl.dot(k * to_end, d_state, input_precision=PRECISION)
        _store(dq_base, sk, offs_t, offs_k, mask_t, mask_k, dq)
        _store(dk_base, sk, offs_t, offs_k, mask_t, mask_k, dk)
        _store(dv_base, sv, offs_t, offs_v, mask_t, mask_v, dv)
        if FUSE_DG:
            d_b = q * dq - k * dk
            chunk_total = tl.sum(d_b, axis=0)
            # inclusive reverse cumsum inside the chunk, plus everything after it
            dg = d_b_after[None, :] + chunk_total[None, :] - tl.cumsum(d_b, axis=0) + d_b
            _store(dg_base, sk, offs_t, offs_k, mask_t, mask_k, dg)
            d_b_after += chunk_total
        d_state = d_state * tl.exp(b_last)[:, None] \
            + tl.dot(tl.trans(q * tl.exp(b)), do, input_precision=PRECISION)


def token_major(x: torch.Tensor) -> torch.Tensor:
    """x (batch, heads, seq_len, d) as a view of (batch, seq_len, heads, d) memory, the layout
    the kernels read and write (the layer's projections already have it: no copy then)."""
    if x.transpose(1, 2).is_contiguous():
        return x
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def _empty(splits: int, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(splits, batch, heads, seq_len, d), token-major."""
    batch, heads, seq_len, d = like.shape
    return torch.empty(splits, batch, seq_len, heads, d, dtype=dtype,
                       device=like.device).transpose(2, 3)


def gla_forward(q, k, v, g, config: dict | None = None, store_states: bool = False):
    """The forward kernel on token-major inputs: o of shape (batch, heads, seq_len, dv),
    token-major, in q's dtype, and the fp32 states entering each chunk,
    (batch * heads, chunks, dk, dv) (empty unless ``store_states``)."""
    batch, heads, seq_len, dk = q.shape
    dv = v.shape[-1]
    cfg = config or launch_config(dk, dv)
    o = _empty(1, v, q.dtype)[0]
    chunks = triton.cdiv(seq_len, cfg["BT"])
    states = torch.empty((batch * heads, chunks, dk, dv) if store_states else (0,),
                         dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o.zero_(), states.zero_()
    grid = (batch * heads, triton.cdiv(dv, cfg["BV_FWD"]))
    _gla_fwd_kernel[grid](
        q, k, v, g, o, states, seq_len, heads, dk, dv,
        BT=cfg["BT"], BK=_next_pow2(dk), BV=cfg["BV_FWD"], STORE_STATES=store_states,
        MAX_SPREAD=cfg["max_spread"], PRECISION=cfg["precision"], num_warps=cfg["num_warps"])
    return o, states


def gla_backward(q, k, v, g, states, do, config: dict | None = None):
    """The backward kernel on token-major tensors: (dq, dk, dv, dlog_alpha), each shaped and
    typed like its input; ``states`` as stored by ``gla_forward`` (recomputed when empty)."""
    batch, heads, seq_len, dk = q.shape
    dv = v.shape[-1]
    cfg = config or launch_config(dk, dv)
    if states.numel() == 0 and q.numel() and v.numel():
        states = gla_forward(q, k, v, g, cfg, store_states=True)[1]
    bk, bv = min(cfg["BK_BWD"], _next_pow2(dk)), min(cfg["BV_BWD"], _next_pow2(dv))
    nk, nv = triton.cdiv(dk, bk), triton.cdiv(dv, bv)
    fuse_dg = nv == 1

    def buffer(like, splits):
        """Where a gradient is written: the final tensor, or fp32 partials to be summed."""
        exact = splits == 1 and like.dtype == torch.float32
        return _empty(splits, like, like.dtype if exact else torch.float32)

    dq, dk_, dv_ = buffer(q, nv), buffer(k, nv), buffer(v, nk)
    dg = buffer(g, 1)[0] if fuse_dg else dq[0]  # dg unused (a placeholder) unless fused
    if q.numel() and v.numel():
        _gla_bwd_kernel[(batch * heads, nk * nv)](
            q, k, v, g, states, do, dq, dk_, dv_, dg, batch, seq_len, heads, dk, dv,
            BT=cfg["BT"], BK=bk, BV=bv, NV=nv, FUSE_DG=fuse_dg, MAX_SPREAD=cfg["max_spread"],
            PRECISION=cfg["precision"], num_warps=cfg["num_warps"])
    else:
        for x in (dq, dk_, dv_, dg):
            x.zero_()
    dq, dk_, dv_ = (x[0] if x.shape[0] == 1 else x.sum(0) for x in (dq, dk_, dv_))
    if not fuse_dg:  # d loss / d b = q dq - k dk, cumulated from the end
        dg = (q.float() * dq - k.float() * dk_).flip(2).cumsum(2).flip(2)
    return dq.to(q.dtype), dk_.to(k.dtype), dv_.to(v.dtype), dg.to(g.dtype)


# -- registered as custom operators (torch.compile calls them opaquely; see long_conv) -------
def _config(config_json: str) -> dict | None:
    """The launch configuration an op was given (JSON, "" for ``launch_config``'s)."""
    return json.loads(config_json) if config_json else None


@torch.library.custom_op("madbench::chunk_gla", mutates_args=())
def chunk_gla_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor,
                 config_json: str, store_states: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``gla_forward`` on token-major inputs: o (token-major) and the chunk states."""
    o, states = gla_forward(q, k, v, log_alpha, _config(config_json), store_states)
    return o, states


@chunk_gla_op.register_fake
def _(q, k, v, log_alpha, config_json, store_states):
    batch, heads, seq_len, dk = q.shape
    dv = v.shape[-1]
    cfg = _config(config_json) or launch_config(int(dk), int(dv))
    chunks = triton.cdiv(int(seq_len), cfg["BT"])
    states = q.new_empty((batch * heads, chunks, dk, dv) if store_states else (0,),
                         dtype=torch.float32)
    return _empty(1, v, q.dtype)[0], states


@torch.library.custom_op("madbench::chunk_gla_backward", mutates_args=())
def chunk_gla_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          log_alpha: torch.Tensor, states: torch.Tensor, do: torch.Tensor,
                          config_json: str
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``gla_backward``: (dq, dk, dv, dlog_alpha), each token-major and typed like its input."""
    grads = gla_backward(q, k, v, log_alpha, states, do, _config(config_json))
    return tuple(token_major(g) for g in grads)


@chunk_gla_backward_op.register_fake
def _(q, k, v, log_alpha, states, do, config_json):
    return tuple(_empty(1, x, x.dtype)[0] for x in (q, k, v, log_alpha))


def _autograd_setup(ctx, inputs, output):
    q, k, v, log_alpha, config_json, _ = inputs
    ctx.save_for_backward(q, k, v, log_alpha, output[1])
    ctx.config_json = config_json


def _autograd_backward(ctx, do, _d_states):
    q, k, v, log_alpha, states = ctx.saved_tensors
    grads = chunk_gla_backward_op(q, k, v, log_alpha, states, token_major(do), ctx.config_json)
    return *grads, None, None


chunk_gla_op.register_autograd(_autograd_backward, setup_context=_autograd_setup)


@chunk_gla_op.register_vmap
def _(info, in_dims, q, k, v, log_alpha, config_json, store_states):
    """vmap folds the vmapped axis into the batch axis."""
    size = info.batch_size

    def fold(x, dim):
        x = x.expand(size, *x.shape) if dim is None else x.movedim(dim, 0)
        return token_major(x.reshape(size * x.shape[1], *x.shape[2:]))

    o, states = chunk_gla_op(*(fold(x, d) for x, d in zip((q, k, v, log_alpha), in_dims)),
                             config_json, store_states)
    return (o.reshape(size, -1, *o.shape[1:]),
            states.reshape(size, -1, *states.shape[1:])), (0, 0)


def chunk_gla_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     log_alpha: torch.Tensor, config: dict | None = None) -> torch.Tensor:
    """GLA output (batch, heads, seq_len, dv) through the Triton kernels (differentiable);
    ``config`` overrides ``launch_config`` (block sizes), for tests and benchmarks."""
    if not (q.shape == k.shape == log_alpha.shape and v.shape[:3] == q.shape[:3]):
        raise ValueError(f"chunk_gla: q, k, log_alpha must share a shape and v its first three "
                         f"dims; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, "
                         f"{tuple(log_alpha.shape)}")
    q, k, v, log_alpha = (token_major(x) for x in (q, k, v, log_alpha))
    # not ``requires_grad``: under vmap (the batched engine) the unwrapped inputs never say so
    needs_grad = torch.is_grad_enabled()
    return chunk_gla_op(q, k, v, log_alpha, json.dumps(config) if config else "", needs_grad)[0]
