"""Triton kernels for gated long causal convolutions, forward and backward.

One operation covers Hyena (H, He) and multi-head Hyena (mH). On tensors laid out as
``v: (K, N, Cv, R, L)``, ``x1, x2: (K, N, Cv, G, L)`` and ``h: (K, Cv, G, L)``::

    y[k, n, c, r, t] = sum_g x2[k, n, c, g, t] *
                       sum_{s<=t} h[k, c, g, t-s] x1[k, n, c, g, s] v[k, n, c, r, s]

``K`` is a configuration axis (vmap folds into it), ``N`` the batch, ``Cv`` the channels (mH: the
heads), ``R`` rows that share a filter (mH: the value index), ``G`` filters summed into one output
(mH: the key index). Hyena is ``R = G = 1``; multi-head Hyena ``Cv = heads, G = dk, R = dv``.

The convolution at ``L <= 1024`` is done directly, as blocked Toeplitz matrix products on the
tensor cores: per (configuration, channel, time block of ``BT`` outputs, block of ``BM`` rows
``(n, r)``), ``acc[m, t] += u[m, s-block] @ T[s-block, t-block]`` with ``T[s, t] = h[t - s]``
gathered from a zero-padded copy of the filter (zeros at negative lags, so no masks; it stays
in L1). The gates are applied on the fly, inside the tiles.

Backward: ``gu = gc (*) h`` (a correlation, ``gc = gy * x2``) in the same blocked form, then the
gate gradients ``gx1 = sum_r gu v``, ``gv = sum_g gu x1``, ``gx2 = sum_r gy c`` at the same tile;
the filter gradient ``gh[lag] = sum_{n,r,t} gc[t] u[t - lag]`` is, per lag block ``d``, the matrix
``Q_d = sum_tb gc[:, tb]^T u[:, tb - d]`` (rows contracted on the tensor cores), whose diagonals
are summed at the end. The forward pass keeps ``c = h * u`` (per filter g) for ``gx2``: for mH
that is ``dv`` times the output, less than the FFT reference holds. With one filter per output
(H, He: ``G == 1``) the forward kernel also writes ``u = x1 * v`` and the input-gradient kernel
``gc = gy * x2``, so that the filter gradient streams two tensors instead of four.

Inputs are read, and outputs and gradients written, in rows at strides that are multiples of 16
elements, with masks that run to the padded length ``LP`` (``..rows``): at in-context and noisy
recall's odd lengths (L = 127, ...) contiguous rows and a ``t < L`` mask made every tile access
scalar. A tile read past ``L`` is zeroed there (``tl.where``) before use, so the results are
those of a ``t < L`` mask, bit for bit.

Float32 inputs use tf32 tensor-core products (relative error about 1e-3); the filter gradient is
slower there (about 5x bf16 at L = 1024), probably because Hopper's tf32 products take only
K-major operands and both of its operands are contracted along the (strided) batch axis.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..rows import aligned, empty_rows, kernel_strides, padded_length

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_DOT_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def block_config(kernel: str, seq_len: int, rows: int, group_rows: int,
                 itemsize: int = 2) -> dict:
    """Tile sizes and launch settings of ``kernel`` ("forward", "inputs" or "filter"): rows of
    ``BM`` (a multiple of ``group_rows``), time blocks of ``BT`` (dividing MAX_BT), for inputs
    of ``itemsize`` bytes. The one place they are chosen (from sweeps on an H100 with
    ``bench_kernel_long_conv.py --tune`` at L = 128 to 1024); a single small tile under the
    interpreter."""
    if INTERPRET:
        return {"BM": max(16, group_rows), "BT": 16, "num_warps": 1, "num_stages": 1}
    long, grouped, wide = seq_len >= 512, group_rows > 1, itemsize >= 4

    def tile(bm, bt, warps, stages):
        return {"BM": bm, "BT": bt, "num_warps": warps, "num_stages": stages}

    if kernel == "forward":
        if wide:
            cfg = tile(128, 64, 8 if grouped else 4, 2)
        else:
            cfg = tile(64, 64, 4, 3) if long and not grouped else tile(128, 64, 4, 2)
    elif kernel == "inputs":
        bt = 64 if seq_len > 256 or (seq_len > 128 and not grouped) else 32
        cfg = tile(64, bt, 4, 2 if wide and long else 3)
    else:  # filter
        if wide:
            cfg = tile(64, 128, 8, 2) if grouped or long else tile(64, 32, 4, 3)
        else:
            cfg = tile(64, 128, 4, 2) if grouped and seq_len > 128 else tile(64, 64, 4, 3)
    if seq_len <= 32:
        cfg["BT"] = 32
    cfg["BM"] = max(cfg["BM"], group_rows)
    return cfg


# -- building blocks -----------------------------------------------------------------------
@triton.jit
def _dot(a, b, acc, DOT: tl.constexpr, PRECISION: tl.constexpr):
    if DOT == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    elif DOT == "fp16":
        return tl.dot(a.to(tl.float16), b.to(tl.float16), acc)
    else:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PRECISION)


@triton.jit
def _sum_groups(x, BM: tl.constexpr, BT: tl.constexpr, R: tl.constexpr):
    """Sum a (BM, BT) tile over each run of R consecutive rows: (BM // R, BT)."""
    if R == 1:
        return x
    else:
        return tl.sum(tl.reshape(x, (BM // R, R, BT)), axis=1)


@triton.jit
def _conv_block(v_rows, x1_rows, taps_row, row_ok, tb, L, LP,
                HAS_X1: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
                BM: tl.constexpr, BT: tl.constexpr):
    """acc[m, t] = sum_{s<=t} h[t - s] u[m, s] for t in time block ``tb``; u = x1 * v.
    ``taps_row`` points at h[0] of a zero-padded copy (zeros at negative lags and past L)."""
    t = tb * BT + tl.arange(0, BT)
    acc = tl.zeros((BM, BT), dtype=tl.float32)
    for sb in range(0, tb + 1):
        s = sb * BT + tl.arange(0, BT)
        mask = row_ok[:, None] & (s < LP)[None, :]
        u = tl.load(v_rows[:, None] + s[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_X1:
            u = u * tl.load(x1_rows[:, None] + s[None, :], mask=mask, other=0.0).to(tl.float32)
        u = tl.where((s < L)[None, :], u, 0.0)
        taps = tl.load(taps_row + (t[None, :] - s[:, None]))          # (BT s, BT t)
        acc = _dot(u, taps, acc, DOT, PRECISION)
    return acc


@triton.jit
def _corr_block(gy_rows, x2_rows, taps_row, row_ok, sb, L, LP,
                HAS_X2: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
                BM: tl.constexpr, BT: tl.constexpr):
    """acc[m, s] = sum_{t>=s} h[t - s] gc[m, t] for s in time block ``sb``; gc = gy * x2."""
    s = sb * BT + tl.arange(0, BT)
    acc = tl.zeros((BM, BT), dtype=tl.float32)
    for tb in range(sb, tl.cdiv(L, BT)):
        t = tb * BT + tl.arange(0, BT)
        mask = row_ok[:, None] & (t < LP)[None, :]
        gc = tl.load(gy_rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_X2:
            gc = gc * tl.load(x2_rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        gc = tl.where((t < L)[None, :], gc, 0.0)
        taps = tl.load(taps_row + (t[:, None] - s[None, :]))          # (BT t, BT s)
        acc = _dot(gc, taps, acc, DOT, PRECISION)
    return acc


# -- kernels -------------------------------------------------------------------------------
@triton.jit
def _forward_kernel(
        v_ptr, x1_ptr, x2_ptr, taps_ptr, y_ptr, c_ptr, u_ptr,
        M, L, LP, Cv, G,
        v_sk, v_sn, v_sc, v_sr,
        x1_sk, x1_sn, x1_sc, x1_sg,
        x2_sk, x2_sn, x2_sc, x2_sg,
        h_sk, h_sc, h_sg,
        y_sk, y_sn, y_sc, y_sr,
        c_sk, c_sn, c_sc, c_sg, c_sr,
        R: tl.constexpr, HAS_X1: tl.constexpr, HAS_X2: tl.constexpr, STORE_U: tl.constexpr,
        DOT: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BT: tl.constexpr):
    """y over one (rows, time) tile; with an output gate also the ungated convolution of every
    filter g into c, (K, N, Cv, G, R, L); with STORE_U (G == 1) also u = x1 * v (as y)."""
    pid = tl.program_id(0)
    kc = tl.program_id(1)
    k = tl.cast(kc // Cv, tl.int64)
    cv = tl.cast(kc % Cv, tl.int64)
    n_mb = tl.cdiv(M, BM)
    tb = tl.cdiv(L, BT) - 1 - pid // n_mb          # longest time blocks first
    mb = pid % n_mb
    rows = mb * BM + tl.arange(0, BM)
    row_ok = rows < M
    n = tl.cast(rows // R, tl.int64)
    r = tl.cast(rows % R, tl.int64)
    t = tb * BT + tl.arange(0, BT)
    mask = row_ok[:, None] & (t < LP)[None, :]     # columns past L: written, never read

    v_rows = v_ptr + k * v_sk + cv * v_sc + n * v_sn + r * v_sr
    y_off = k * y_sk + cv * y_sc + n * y_sn + r * y_sr
    c_off = k * c_sk + cv * c_sc + n * c_sn + r * c_sr
    y_acc = tl.zeros((BM, BT), dtype=tl.float32)
    for g in range(0, G):
        g64 = tl.cast(g, tl.int64)
        taps_row = taps_ptr + k * h_sk + cv * h_sc + g64 * h_sg
        x1_rows = x1_ptr + k * x1_sk + cv * x1_sc + g64 * x1_sg + n * x1_sn
        acc = _conv_block(v_rows, x1_rows, taps_row, row_ok, tb, L, LP, HAS_X1, DOT,
                          PRECISION, BM, BT)
        if HAS_X2:
            tl.store(c_ptr + g64 * c_sg + c_off[:, None] + t[None, :], acc, mask=mask)
            x2_rows = x2_ptr + k * x2_sk + cv * x2_sc + g64 * x2_sg + n * x2_sn
            gate = tl.load(x2_rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            y_acc += gate * acc
        else:
            y_acc += acc
        if STORE_U:
            u = tl.load(v_rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            u = u * tl.load(x1_rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            tl.store(u_ptr + y_off[:, None] + t[None, :], u, mask=mask)
    tl.store(y_ptr + y_off[:, None] + t[None, :], y_acc, mask=mask)


@triton.jit
def _backward_inputs_kernel(
        v_ptr, x1_ptr, x2_ptr, taps_ptr, gy_ptr, c_ptr, gv_ptr, gx1_ptr, gx2_ptr, gc_ptr,
        M, L, LP, Cv, G,
        v_sk, v_sn, v_sc, v_sr,
        x1_sk, x1_sn, x1_sc, x1_sg,
        x2_sk, x2_sn, x2_sc, x2_sg,
        h_sk, h_sc, h_sg,
        gy_sk, gy_sn, gy_sc, gy_sr,
        y_sk, y_sn, y_sc, y_sr,
        c_sk, c_sn, c_sc, c_sg, c_sr,
        gx_sk, gx_sn, gx_sc, gx_sg,
        R: tl.constexpr, HAS_X1: tl.constexpr, HAS_X2: tl.constexpr, STORE_GC: tl.constexpr,
        DOT: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BT: tl.constexpr):
    """Per tile of positions p: gv, gx1 and gx2 there (gv and c are laid out as y); with
    STORE_GC (G == 1) also gc = gy * x2, laid out as y."""
    pid = tl.program_id(0)
    kc = tl.program_id(1)
    k = tl.cast(kc // Cv, tl.int64)
    cv = tl.cast(kc % Cv, tl.int64)
    n_mb = tl.cdiv(M, BM)
    tb = pid // n_mb                                # longest correlations first
    mb = pid % n_mb
    rows = mb * BM + tl.arange(0, BM)
    row_ok = rows < M
    n = tl.cast(rows // R, tl.int64)
    r = tl.cast(rows % R, tl.int64)
    p = tb * BT + tl.arange(0, BT)
    p_ok = p < LP                                   # columns past L: written, never read
    mask = row_ok[:, None] & p_ok[None, :]
    nq = mb * (BM // R) + tl.arange(0, BM // R)     # rows n of the tiles summed over r
    q_mask = (nq < M // R)[:, None] & p_ok[None, :]
    nq = tl.cast(nq, tl.int64)

    v_rows = v_ptr + k * v_sk + cv * v_sc + n * v_sn + r * v_sr
    gy_rows = gy_ptr + k * gy_sk + cv * gy_sc + n * gy_sn + r * gy_sr
    y_off = k * y_sk + cv * y_sc + n * y_sn + r * y_sr
    c_off = k * c_sk + cv * c_sc + n * c_sn + r * c_sr
    gv_acc = tl.zeros((BM, BT), dtype=tl.float32)
    for g in range(0, G):
        g64 = tl.cast(g, tl.int64)
        taps_row = taps_ptr + k * h_sk + cv * h_sc + g64 * h_sg
        x1_rows = x1_ptr + k * x1_sk + cv * x1_sc + g64 * x1_sg + n * x1_sn
        x2_rows = x2_ptr + k * x2_sk + cv * x2_sc + g64 * x2_sg + n * x2_sn
        gx_off = k * gx_sk + cv * gx_sc + g64 * gx_sg + nq * gx_sn
        gu = _corr_block(gy_rows, x2_rows, taps_row, row_ok, tb, L, LP, HAS_X2, DOT,
                         PRECISION, BM, BT)
        # the tiles at p are loaded after the loop, so they do not hold registers during it
        if HAS_X1:
            v_here = tl.load(v_rows[:, None] + p[None, :], mask=mask, other=0.0).to(tl.float32)
            gx1 = _sum_groups(gu * v_here, BM, BT, R)
            tl.store(gx1_ptr + gx_off[:, None] + p[None, :], gx1, mask=q_mask)
            gate = tl.load(x1_rows[:, None] + p[None, :], mask=mask, other=0.0).to(tl.float32)
            gv_acc += gu * gate
        else:
            gv_acc += gu
        if HAS_X2:
            gy_here = tl.load(gy_rows[:, None] + p[None, :], mask=mask, other=0.0)
            c = tl.load(c_ptr + g64 * c_sg + c_off[:, None] + p[None, :], mask=mask, other=0.0)
            gx2 = _sum_groups(gy_here.to(tl.float32) * c.to(tl.float32), BM, BT, R)
            tl.store(gx2_ptr + gx_off[:, None] + p[None, :], gx2, mask=q_mask)
            if STORE_GC:
                gate = tl.load(x2_rows[:, None] + p[None, :], mask=mask, other=0.0)
                gc = gy_here.to(tl.float32) * gate.to(tl.float32)
                tl.store(gc_ptr + y_off[:, None] + p[None, :], gc, mask=mask)
    tl.store(gv_ptr + y_off[:, None] + p[None, :], gv_acc, mask=mask)


@triton.jit
def _backward_filter_kernel(
        v_ptr, x1_ptr, x2_ptr, gy_ptr, gh_ptr,
        M, L, LP, Cv, G,
        v_sk, v_sn, v_sc, v_sr,
        x1_sk, x1_sn, x1_sc, x1_sg,
        x2_sk, x2_sn, x2_sc, x2_sg,
        gy_sk, gy_sn, gy_sc, gy_sr,
        gh_sp, gh_sk, gh_sc, gh_sg,
        R: tl.constexpr, HAS_X1: tl.constexpr, HAS_X2: tl.constexpr,
        DOT: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BT: tl.constexpr):
    """Per lag block d and filter (k, c, g): the diagonal sums of Q_d, written in two halves
    (lags in block d to part 0, lags in block d - 1 to part 1)."""
    d = tl.program_id(0)                            # d = 0 (the most work) first
    kcg = tl.program_id(1)
    k = tl.cast(kcg // (Cv * G), tl.int64)
    cv = tl.cast((kcg // G) % Cv, tl.int64)
    g = tl.cast(kcg % G, tl.int64)
    n_mb = tl.cdiv(M, BM)
    n_tb = tl.cdiv(L, BT)
    q = tl.zeros((BT, BT), dtype=tl.float32)
    for tb in range(d, n_tb):
        t = tb * BT + tl.arange(0, BT)
        s = t - d * BT
        t_ok = t < LP
        s_ok = s < LP
        for mb in range(0, n_mb):
            rows = mb * BM + tl.arange(0, BM)
            row_ok = rows < M
            n = tl.cast(rows // R, tl.int64)
            r = tl.cast(rows % R, tl.int64)
            t_mask = row_ok[:, None] & t_ok[None, :]
            s_mask = row_ok[:, None] & s_ok[None, :]
            gy_rows = gy_ptr + k * gy_sk + cv * gy_sc + n * gy_sn + r * gy_sr
            gc = tl.load(gy_rows[:, None] + t[None, :], mask=t_mask, other=0.0).to(tl.float32)
            if HAS_X2:
                x2_rows = x2_ptr + k * x2_sk + cv * x2_sc + g * x2_sg + n * x2_sn
                gc = gc * tl.load(x2_rows[:, None] + t[None, :], mask=t_mask,
                                  other=0.0).to(tl.float32)
            gc = tl.where((t < L)[None, :], gc, 0.0)
            v_rows = v_ptr + k * v_sk + cv * v_sc + n * v_sn + r * v_sr
            u = tl.load(v_rows[:, None] + s[None, :], mask=s_mask, other=0.0).to(tl.float32)
            if HAS_X1:
                x1_rows = x1_ptr + k * x1_sk + cv * x1_sc + g * x1_sg + n * x1_sn
                u = u * tl.load(x1_rows[:, None] + s[None, :], mask=s_mask,
                                other=0.0).to(tl.float32)
            u = tl.where((s < L)[None, :], u, 0.0)
            q = _dot(tl.trans(gc), u, q, DOT, PRECISION)          # q[i, j]: lag d*BT + i - j
    i = tl.arange(0, BT)[:, None]
    x = tl.arange(0, BT)[None, :]
    j = i - x                                       # lag d*BT + x
    inside = j >= 0
    s_pos = tl.sum(tl.where(inside, tl.gather(q, tl.where(inside, j, 0), 1), 0.0), axis=0)
    j = i - x + BT                                  # lag (d-1)*BT + x
    inside = j < BT
    s_neg = tl.sum(tl.where(inside, tl.gather(q, tl.where(inside, j, 0), 1), 0.0), axis=0)
    s_neg = tl.where(d > 0, s_neg, 0.0)             # d = 0: negative lags, dropped; and part 1's
    neg_block = tl.where(d > 0, d - 1, n_tb - 1)    # last block, which nothing else writes
    base = gh_ptr + k * gh_sk + cv * gh_sc + g * gh_sg
    lanes = tl.arange(0, BT)
    tl.store(base + d * BT + lanes, s_pos)
    tl.store(base + gh_sp + neg_block * BT + lanes, s_neg)


# -- launchers -----------------------------------------------------------------------------
def _dot_kind(dtype: torch.dtype) -> str:
    if dtype not in _DOT_DTYPES:
        raise TypeError(f"long_conv triton kernel: unsupported dtype {dtype}")
    return _DOT_DTYPES[dtype]


def _default_precision() -> str:
    return "ieee" if INTERPRET else "tf32"


def _launch_settings(cfg: dict) -> dict:
    return {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}


MAX_BT = 128  # the taps are padded for time blocks up to this size (a divisor of it)


def padded_taps(h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``h`` (K, Cv, G, L) in the matrix-product dtype, with MAX_BT zeros before lag 0 and zeros
    past L up to a multiple of MAX_BT, so that Toeplitz tiles load without masks. Returned as
    the view that starts at lag 0."""
    K, Cv, G, L = h.shape
    length = triton.cdiv(L, MAX_BT) * MAX_BT
    taps = torch.zeros((K, Cv, G, MAX_BT + length), dtype=dtype, device=h.device)
    taps[..., MAX_BT:MAX_BT + L] = h
    return taps[..., MAX_BT:]


def forward(v, x1, x2, taps, precision: str | None = None):
    """``(y, c, u)``: the output; when there is an output gate, the ungated convolutions
    ``c`` (K, N, Cv, G, R, L) kept for the backward pass; when ``G == 1`` and there is an input
    gate, ``u = x1 * v`` for the filter gradient (absent ones are empty tensors).
    ``taps``: ``padded_taps(h)``."""
    K, N, Cv, R, L = v.shape
    G = taps.shape[2]
    M = N * R
    v, x1, x2 = (aligned(x) for x in (v, x1, x2))
    cfg = block_config("forward", L, M, R, v.element_size())
    BM, BT = cfg["BM"], cfg["BT"]
    y = empty_rows((K, N, Cv, R, L), v.dtype, v.device)
    if x2 is not None:
        c = empty_rows((K, N, Cv, G, R, L), v.dtype, v.device)
        c_strides = kernel_strides(c, 5)
    else:
        c, c_strides = y.new_empty((K, 0)), (0,) * 5
    store_u = G == 1 and x1 is not None
    u = empty_rows(tuple(y.shape), v.dtype, v.device) if store_u else y.new_empty((K, 0))
    grid = (triton.cdiv(L, BT) * triton.cdiv(M, BM), K * Cv)
    _forward_kernel[grid](
        v, v if x1 is None else x1, v if x2 is None else x2, taps, y, y if x2 is None else c,
        u if store_u else y,
        M, L, padded_length(L), Cv, G,
        *kernel_strides(v, 4), *kernel_strides(x1, 4), *kernel_strides(x2, 4),
        *kernel_strides(taps, 3), *kernel_strides(y, 4), *c_strides,
        R=R, HAS_X1=x1 is not None, HAS_X2=x2 is not None, STORE_U=store_u,
        DOT=_dot_kind(v.dtype), PRECISION=precision or _default_precision(), BM=BM, BT=BT,
        **_launch_settings(cfg))
    return y, c, u


def backward_inputs(gy, v, x1, x2, taps, c, precision: str | None = None):
    """Gradients ``(gv, gx1, gx2, gc)`` (None for an absent gate); ``gc = gy * x2`` for the
    filter gradient when ``G == 1`` and there is an output gate, else None. ``gy`` last-axis
    contiguous."""
    K, N, Cv, R, L = v.shape
    G = taps.shape[2]
    M = N * R
    cfg = block_config("inputs", L, M, R, v.element_size())
    BM, BT = cfg["BM"], cfg["BT"]
    gv = empty_rows((K, N, Cv, R, L), v.dtype, v.device)
    gshape = (K, N, Cv, G, L)
    gx1 = None if x1 is None else empty_rows(gshape, v.dtype, v.device)
    gx2 = None if x2 is None else empty_rows(gshape, v.dtype, v.device)
    gc = empty_rows(tuple(gv.shape), v.dtype, v.device) if G == 1 and x2 is not None else None
    _backward_inputs_kernel[(triton.cdiv(L, BT) * triton.cdiv(M, BM), K * Cv)](
        v, v if x1 is None else x1, v if x2 is None else x2, taps, gy,
        gv if x2 is None else c, gv, gv if gx1 is None else gx1, gv if gx2 is None else gx2,
        gv if gc is None else gc,
        M, L, padded_length(L), Cv, G,
        *kernel_strides(v, 4), *kernel_strides(x1, 4), *kernel_strides(x2, 4),
        *kernel_strides(taps, 3), *kernel_strides(gy, 4), *kernel_strides(gv, 4),
        *kernel_strides(None if x2 is None else c, 5),
        *kernel_strides(gx1 if gx1 is not None else gx2, 4),
        R=R, HAS_X1=x1 is not None, HAS_X2=x2 is not None, STORE_GC=gc is not None,
        DOT=_dot_kind(v.dtype), PRECISION=precision or _default_precision(), BM=BM, BT=BT,
        **_launch_settings(cfg))
    return gv, gx1, gx2, gc


def backward_filter(gy, v, x1, x2, G: int, precision: str | None = None):
    """Gradient of the filters, (K, Cv, G, L) in float32; ``gy`` last-axis contiguous."""
    K, N, Cv, R, L = v.shape
    M = N * R
    cfg = block_config("filter", L, M, R, v.element_size())
    BM, BT = cfg["BM"], cfg["BT"]
    n_tb = triton.cdiv(L, BT)
    parts = torch.empty((2, K, Cv, G, n_tb * BT), dtype=torch.float32, device=v.device)
    _backward_filter_kernel[(n_tb, K * Cv * G)](
        v, v if x1 is None else x1, v if x2 is None else x2, gy, parts,
        M, L, padded_length(L), Cv, G,
        *kernel_strides(v, 4), *kernel_strides(x1, 4), *kernel_strides(x2, 4),
        *kernel_strides(gy, 4), *kernel_strides(parts, 4),
        R=R, HAS_X1=x1 is not None, HAS_X2=x2 is not None,
        DOT=_dot_kind(v.dtype), PRECISION=precision or _default_precision(), BM=BM, BT=BT,
        **_launch_settings(cfg))
    return parts.sum(0)[..., :L]


# -- registered as custom operators -------------------------------------------------------
# torch.compile treats a custom operator as one opaque call whose outputs it knows from the
# fake implementation (shapes and strides, the padded rows included), instead of tracing into
# the kernels' launches.
def _forward_fake(v, x1, x2, h):
    """Outputs of ``forward`` without computing them: the same shapes, dtypes and strides."""
    K, N, Cv, R, L = v.shape
    G = h.shape[2]
    y = empty_rows((K, N, Cv, R, L), v.dtype, v.device)
    c = (empty_rows((K, N, Cv, G, R, L), v.dtype, v.device) if x2 is not None
         else v.new_empty((K, 0)))
    u = empty_rows((K, N, Cv, R, L), v.dtype, v.device) if G == 1 and x1 is not None \
        else v.new_empty((K, 0))
    return y, c, u, padded_taps(h, v.dtype)


@torch.library.custom_op("madbench::long_conv", mutates_args=())
def long_conv_op(v: torch.Tensor, x1: torch.Tensor | None, x2: torch.Tensor | None,
                 h: torch.Tensor, precision: str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, c, u, taps)`` on the canonical layout: the output, and what the backward pass
    keeps (see ``forward`` and ``padded_taps``)."""
    taps = padded_taps(h, v.dtype)
    y, c, u = forward(v, x1, x2, taps, precision)
    return y, c, u, taps


@long_conv_op.register_fake
def _(v, x1, x2, h, precision):
    return _forward_fake(v, x1, x2, h)


@torch.library.custom_op("madbench::long_conv_backward", mutates_args=())
def long_conv_backward_op(gy: torch.Tensor, v: torch.Tensor, x1: torch.Tensor | None,
                          x2: torch.Tensor | None, c: torch.Tensor, u: torch.Tensor,
                          taps: torch.Tensor, filter_grad: bool, h_dtype: torch.dtype,
                          precision: str
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gv, gx1, gx2, gh)``; an absent gate's gradient, and ``gh`` without
    ``filter_grad``, are empty tensors."""
    v, x1, x2 = (aligned(x) for x in (v, x1, x2))
    gy = aligned(gy.to(v.dtype))
    gv, gx1, gx2, gc = backward_inputs(gy, v, x1, x2, taps, c, precision)
    gh = v.new_empty((0,), dtype=h_dtype)
    if filter_grad:    # from the products kept by the kernels where there are (G == 1)
        if u.numel():
            v, x1 = u, None
        if gc is not None:
            gy, x2 = gc, None
        gh = backward_filter(gy, v, x1, x2, taps.shape[2], precision).to(h_dtype).contiguous()
    return (gv, v.new_empty((0,)) if gx1 is None else gx1,
            v.new_empty((0,)) if gx2 is None else gx2, gh)


@long_conv_backward_op.register_fake
def _(gy, v, x1, x2, c, u, taps, filter_grad, h_dtype, precision):
    K, Cv, G = taps.shape[:3]
    gx1 = v.new_empty((0,)) if x1 is None else empty_rows(tuple(x1.shape), v.dtype, v.device)
    gx2 = v.new_empty((0,)) if x2 is None else empty_rows(tuple(x2.shape), v.dtype, v.device)
    gh = (v.new_empty((K, Cv, G, v.shape[-1]), dtype=h_dtype) if filter_grad
          else v.new_empty((0,), dtype=h_dtype))
    return empty_rows(tuple(v.shape), v.dtype, v.device), gx1, gx2, gh


def _autograd_setup(ctx, inputs, output):
    v, x1, x2, h, precision = inputs
    _, c, u, taps = output
    ctx.save_for_backward(v, x1, x2, c, u, taps)
    ctx.h_dtype = h.dtype
    ctx.precision = precision


def _autograd_backward(ctx, gy, _gc, _gu, _gtaps):
    v, x1, x2, c, u, taps = ctx.saved_tensors
    needs = ctx.needs_input_grad
    gv, gx1, gx2, gh = long_conv_backward_op(gy, v, x1, x2, c, u, taps, needs[3],
                                             ctx.h_dtype, ctx.precision)
    return (gv if needs[0] else None, gx1 if needs[1] and x1 is not None else None,
            gx2 if needs[2] and x2 is not None else None, gh if needs[3] else None, None)


long_conv_op.register_autograd(_autograd_backward, setup_context=_autograd_setup)


@long_conv_op.register_vmap
def _(info, in_dims, v, x1, x2, h, precision):
    """The vmapped axis folded into ``K``."""
    size = info.batch_size

    def fold(x, dim):
        if x is None:
            return None
        x = x.expand(size, *x.shape) if dim is None else x.movedim(dim, 0)
        return x.reshape(size * x.shape[1], *x.shape[2:])

    outputs = long_conv_op(*(fold(x, d) for x, d in zip((v, x1, x2, h), in_dims[:4])),
                           precision)
    return tuple(o.unflatten(0, (size, -1)) for o in outputs), (0, 0, 0, 0)


def long_conv(v, x1, x2, h, precision: str | None = None) -> torch.Tensor:
    """The op on the canonical layout, differentiable: returns ``y`` (K, N, Cv, R, L)."""
    return long_conv_op(v, x1, x2, h, precision or _default_precision())[0]
