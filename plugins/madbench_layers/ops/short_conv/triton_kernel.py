"""Triton kernels for the short causal depthwise convolution, forward and backward.

Output channel ``c`` convolves input channel ``c % C_in`` (``repeat = C / C_in`` copies of the
input: Hyena's projection tied over groups, without materialising the copies). Per program one
batch row and a tile of ``BC`` channels x ``BL`` time steps; the ``K`` taps are a static loop of
shifted, masked loads (the shifted rows stay in cache). Backward, per tile of input channels:
the input gradient sums, over the ``repeat`` output channels that read each input channel, the
same loop with the shifts reversed, ``gx[s] = sum_k w[k] gy[s + K - 1 - k]``; the weight and
bias gradients are summed per tile into a float32 buffer of partial sums, then over the tiles by
PyTorch (no atomics: the same result on every run). The output, and the output gradient it
reads, have rows at strides that are multiples of 16 elements and are accessed with masks that
run to the padded length ``LP`` (``..rows``: at in-context and noisy recall's odd lengths
contiguous rows and a ``t < L`` mask would make every access scalar); the output gradient read
past ``L`` is zeroed there before use.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..rows import aligned, empty_rows, padded_length

BC, BL = 32, 64


@triton.jit
def _forward(x, w, b, y, C_in, C, L, LP, sxb, sxc, sxl, syb, syc, HAS_BIAS: tl.constexpr,
             K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    t = tl.program_id(2) * BLOCK_L + tl.arange(0, BLOCK_L)
    cm = c < C
    acc = tl.zeros((BLOCK_C, BLOCK_L), dtype=tl.float32)
    base = x + tl.cast(pid_b, tl.int64) * sxb + (c % C_in)[:, None] * sxc
    for k in tl.static_range(K):
        src = t + (k - (K - 1))
        m = cm[:, None] & (src[None, :] >= 0) & (src[None, :] < L)
        xv = tl.load(base + src[None, :] * sxl, mask=m, other=0.0).to(tl.float32)
        wk = tl.load(w + c * K + k, mask=cm, other=0.0).to(tl.float32)
        acc += wk[:, None] * xv
    if HAS_BIAS:
        acc += tl.load(b + c, mask=cm, other=0.0).to(tl.float32)[:, None]
    out = y + tl.cast(pid_b, tl.int64) * syb + c[:, None] * syc + t[None, :]
    tl.store(out, acc.to(y.dtype.element_ty), mask=cm[:, None] & (t[None, :] < LP))


@triton.jit
def _backward(x, w, gy, gx, partial, C_in, L, LP, sxb, sxc, sxl, sgb, sgc, sgl, sdb, sdc, sdl,
              K: tl.constexpr, R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_l = tl.program_id(2)
    ci = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)      # input channels
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    cm = ci < C_in
    tm = t < L
    xb = x + tl.cast(pid_b, tl.int64) * sxb + ci[:, None] * sxc
    acc = tl.zeros((BLOCK_C, BLOCK_L), dtype=tl.float32)
    for r in tl.static_range(R):
        c = ci + r * C_in                                         # the output channels
        gb = gy + tl.cast(pid_b, tl.int64) * sgb + c[:, None] * sgc
        g_here = tl.load(gb + t[None, :] * sgl, mask=cm[:, None] & (t < LP)[None, :],
                         other=0.0).to(tl.float32)
        g_here = tl.where(tm[None, :], g_here, 0.0)
        # partial sums for this (batch row, time tile): [K weight taps, then the bias]
        row = partial + ((tl.cast(pid_b, tl.int64) * tl.num_programs(2) + pid_l) * (C_in * R)
                         + c) * (K + 1)
        for k in tl.static_range(K):
            wk = tl.load(w + c * K + k, mask=cm, other=0.0).to(tl.float32)
            dst = t + ((K - 1) - k)                    # gx[t] takes w[k] gy[t + K - 1 - k]
            g = tl.load(gb + dst[None, :] * sgl, mask=cm[:, None] & (dst < LP)[None, :], other=0.0)
            acc += wk[:, None] * tl.where((dst < L)[None, :] & tm[None, :], g.to(tl.float32), 0.0)
            src = t + (k - (K - 1))                    # gw[k] = sum_t gy[t] x[t - K + 1 + k]
            xm = cm[:, None] & (src[None, :] >= 0) & tm[None, :]
            xv = tl.load(xb + src[None, :] * sxl, mask=xm, other=0.0).to(tl.float32)
            tl.store(row + k, tl.sum(g_here * xv, axis=1), mask=cm)
        tl.store(row + K, tl.sum(g_here, axis=1), mask=cm)
    out = gx + tl.cast(pid_b, tl.int64) * sdb + ci[:, None] * sdc + t[None, :] * sdl
    tl.store(out, acc.to(gx.dtype.element_ty), mask=cm[:, None] & tm[None, :])


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x: (B, C_in, L), any strides; weight: (C, K) with C a multiple of C_in -> (B, C, L)
    (rows aligned, ``..rows``)."""
    B, C_in, L = x.shape
    C = weight.shape[0]
    y = empty_rows((B, C, L), x.dtype, x.device)
    grid = (B, triton.cdiv(C, BC), triton.cdiv(L, BL))
    _forward[grid](x, weight.contiguous(), bias if bias is not None else weight, y, C_in, C, L,
                   padded_length(L), *x.stride(), *y.stride()[:2], HAS_BIAS=bias is not None,
                   K=weight.shape[1], BLOCK_C=BC, BLOCK_L=BL)
    return y


def backward(gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad x in x's layout, grad weight (C, K) and grad bias (C,) in float32)."""
    B, C_in, L = x.shape
    C, K = weight.shape
    gy = aligned(gy)
    gx = torch.empty_like(x)
    if gx.stride() != x.stride():      # a non-dense view: write a contiguous gradient
        gx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    tiles = triton.cdiv(L, BL)
    partial = torch.empty((B, tiles, C, K + 1), device=x.device, dtype=torch.float32)
    grid = (B, triton.cdiv(C_in, BC), tiles)
    _backward[grid](x, weight.contiguous(), gy, gx, partial, C_in, L, padded_length(L),
                    *x.stride(), *gy.stride(), *gx.stride(), K=K, R=C // C_in, BLOCK_C=BC,
                    BLOCK_L=BL)
    sums = partial.sum(dim=(0, 1))
    return gx, sums[:, :K], sums[:, K]


# -- registered as custom operators (torch.compile calls them opaquely; see long_conv) -------
@torch.library.custom_op("madbench::short_conv", mutates_args=())
def short_conv_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                  ) -> torch.Tensor:
    """``forward``: (B, C_in, L), (C, K), (C,) or None -> (B, C, L), rows aligned."""
    return forward(x, weight, bias)


@short_conv_op.register_fake
def _(x, weight, bias):
    return empty_rows((x.shape[0], weight.shape[0], x.shape[2]), x.dtype, x.device)


@torch.library.custom_op("madbench::short_conv_backward", mutates_args=())
def short_conv_backward_op(gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``backward``: the gradients of x (in x's layout, or contiguous), weight and bias
    (float32)."""
    gx, gw, gb = backward(gy, x, weight)
    return gx, gw.contiguous(), gb.contiguous()     # views of one buffer: two fresh outputs


@short_conv_backward_op.register_fake
def _(gy, x, weight):
    gx = torch.empty_like(x)
    if gx.stride() != x.stride():
        gx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    C, K = weight.shape
    return (gx, weight.new_empty((C, K), dtype=torch.float32),
            weight.new_empty((C,), dtype=torch.float32))


def _autograd_setup(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.bias_dtype = None if bias is None else bias.dtype


def _autograd_backward(ctx, gy):
    x, weight = ctx.saved_tensors
    gx, gw, gb = short_conv_backward_op(gy, x, weight)
    return gx, gw.to(weight.dtype), None if ctx.bias_dtype is None else gb.to(ctx.bias_dtype)


short_conv_op.register_autograd(_autograd_backward, setup_context=_autograd_setup)


@short_conv_op.register_vmap
def _(info, in_dims, x, weight, bias):
    """Under ``vmap`` (the batched engine's configurations) an input batch shared by every
    configuration's weights is folded into the batch; weights that differ per configuration
    run one call per configuration."""
    size = info.batch_size
    x_dim, w_dim, b_dim = in_dims
    if w_dim is None and b_dim is None:          # shared weights: fold into the batch
        x = x.movedim(x_dim, 0)
        y = short_conv_op(x.reshape(size * x.shape[1], *x.shape[2:]), weight, bias)
        return y.unflatten(0, (size, -1)), 0

    def pick(t, dim, i):
        return t if t is None or dim is None else t.select(dim, i)
    return torch.stack([short_conv_op(pick(x, x_dim, i), pick(weight, w_dim, i),
                                      pick(bias, b_dim, i)) for i in range(size)]), 0
