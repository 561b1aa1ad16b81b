"""Fused selective scan in Triton, forward and backward.

One program per (sequence, block of channels) walks the sequence in chunks of ``BLOCK_T`` steps.
Per chunk it loads coalesced [BLOCK_T, BLOCK_D] tiles of u and delta, forms the decays
``exp(delta A)`` and drives ``delta u B`` for the [BLOCK_T, BLOCK_D, d_state] block, solves the
recurrence inside the chunk with a parallel associative scan over time (pairs ``(a, b)``
combine as ``(a1 a2, a2 b1 + b2)``), adds the state carried in from the previous chunk and
contracts with C. The state stays in fp32 registers; with gradients enabled the forward pass
stores the state at every chunk end (``d_state * d_inner`` floats per chunk and sequence).

The backward pass walks the chunks in reverse: it recomputes the states of a chunk from the
stored checkpoint, runs the adjoint recurrence ``g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}``
as a reverse scan, and forms every gradient in the same pass: du and ddelta per element, dB and
dC per (chunk of channels, step), dA and dD per sequence (the small cross-program sums are done
afterwards in PyTorch, so results are deterministic).

A and D may carry a leading group axis, A: (groups, d_inner, d_state), D: (groups, d_inner);
sequence ``b`` then uses group ``b // (batch / groups)``. That is how ``vmap`` over stacked configurations is
served: the configuration axis is folded into the batch axis and into the groups.

Imported lazily (triton is not needed on the CPU path).
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from ..backend import last_axis_contiguous


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def kernel_config(seq_len: int, d_inner: int, d_state: int) -> dict:
    """Launch settings for both kernels: the one place where they are chosen (do not mutate).

    ``block_t`` is the chunk length (shared: the backward pass reads the forward pass's
    chunk-end states); ``fwd`` and ``bwd`` are (channels per program, warps). Tuned on an H100
    with benchmarks/bench_kernel_selective_scan.py --sweep at batch 128, d_inner 256: at
    d_state 4 (MAD) short sequences favour 16-step chunks and a one-warp backward; at d_state 16
    (scaling runs) 4-step chunks and a two-warp backward (0.67 ms against 2.4 ms for 16-step
    chunks with four warps), i.e. about 32 elements of each [block_t, d_state, 32] tile per
    thread. Larger states keep that ratio (untimed beyond 16). Under the interpreter a single
    small config (several chunks and channel blocks even at test shapes).
    """
    if _interpreting():
        return {"block_t": 16, "fwd": (8, 1), "bwd": (8, 1)}
    n_state = triton.next_power_of_2(d_state)
    fwd_d = min(64, max(32, triton.next_power_of_2(d_inner)))
    fwd = (fwd_d, fwd_d // 32)
    if n_state <= 4:
        return {"block_t": 16 if seq_len <= 256 else 8, "fwd": fwd, "bwd": (32, 1)}
    return {"block_t": 4, "fwd": fwd, "bwd": (32, n_state // 8)}


@triton.jit
def _combine(a_left, b_left, a_right, b_right):
    """Compose two affine steps h -> a h + b, the left one first."""
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _selective_scan_fwd_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, y_ptr, states_ptr,
        seq_len, d_inner, d_state, batch_per_group, n_chunks,
        su_b, su_t, su_d, sdt_b, sdt_t, sdt_d, sB_b, sB_t, sB_n, sC_b, sC_t, sC_n,
        BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
        STORE_STATES: tl.constexpr):
    # blocks are [time, state, channel]: channels across threads, time and state in registers
    b = tl.cast(tl.program_id(0), tl.int64)
    pid_d = tl.program_id(1)
    group = b // batch_per_group
    offs_t = tl.arange(0, BLOCK_T)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < d_inner
    mask_nd = (offs_n < d_state)[:, None] & mask_d[None, :]

    A = tl.load(A_ptr + (group * d_inner + offs_d[None, :]) * d_state + offs_n[:, None],
                mask=mask_nd, other=0.0)
    Dv = tl.load(D_ptr + group * d_inner + offs_d, mask=mask_d, other=0.0)
    u_base = u_ptr + b * su_b
    dt_base = dt_ptr + b * sdt_b
    B_base = B_ptr + b * sB_b
    C_base = C_ptr + b * sC_b
    y_base = y_ptr + b * seq_len * d_inner
    is_first = (offs_t == 0)[:, None, None]
    is_last = (offs_t == BLOCK_T - 1)[:, None, None]

    h = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for c in range(n_chunks):
        t = c * BLOCK_T + offs_t
        mask_t = t < seq_len
        mask_td = mask_t[:, None] & mask_d[None, :]
        mask_tn = mask_t[:, None] & (offs_n < d_state)[None, :]
        u = tl.cast(tl.load(u_base + t[:, None] * su_t + offs_d[None, :] * su_d,
                            mask=mask_td, other=0.0), tl.float32)
        dt = tl.cast(tl.load(dt_base + t[:, None] * sdt_t + offs_d[None, :] * sdt_d,
                             mask=mask_td, other=0.0), tl.float32)
        Bt = tl.cast(tl.load(B_base + t[:, None] * sB_t + offs_n[None, :] * sB_n,
                             mask=mask_tn, other=0.0), tl.float32)
        Ct = tl.cast(tl.load(C_base + t[:, None] * sC_t + offs_n[None, :] * sC_n,
                             mask=mask_tn, other=0.0), tl.float32)
        # padded steps have delta = 0: decay 1, drive 0, so the state passes through unchanged
        decay = tl.exp(dt[:, None, :] * A[None, :, :])
        drive = (dt * u)[:, None, :] * Bt[:, :, None]
        drive += tl.where(is_first, decay * h[None, :, :], 0.0)  # the state carried in
        _, hs = tl.associative_scan((decay, drive), 0, _combine)
        y = tl.sum(hs * Ct[:, :, None], axis=1) + Dv[None, :] * u
        tl.store(y_base + t[:, None] * d_inner + offs_d[None, :],
                 tl.cast(y, y_ptr.dtype.element_ty), mask=mask_td)
        h = tl.sum(tl.where(is_last, hs, 0.0), axis=0)
        if STORE_STATES:
            tl.store(states_ptr + ((b * n_chunks + c) * d_state + offs_n[:, None]) * d_inner
                     + offs_d[None, :], h, mask=mask_nd)


@triton.jit
def _selective_scan_bwd_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, dy_ptr, states_ptr,
        du_ptr, ddt_ptr, dB_ptr, dC_ptr, dAD_ptr,
        seq_len, d_inner, d_state, batch_per_group, n_chunks, n_dblocks,
        su_b, su_t, su_d, sdt_b, sdt_t, sdt_d, sB_b, sB_t, sB_n, sC_b, sC_t, sC_n,
        sdy_b, sdy_t, sdy_d,
        BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.cast(tl.program_id(0), tl.int64)
    pid_d = tl.program_id(1)
    group = b // batch_per_group
    offs_t = tl.arange(0, BLOCK_T)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < d_inner
    mask_n = offs_n < d_state
    mask_nd = mask_n[:, None] & mask_d[None, :]

    A = tl.load(A_ptr + (group * d_inner + offs_d[None, :]) * d_state + offs_n[:, None],
                mask=mask_nd, other=0.0)
    Dv = tl.load(D_ptr + group * d_inner + offs_d, mask=mask_d, other=0.0)
    u_base = u_ptr + b * su_b
    dt_base = dt_ptr + b * sdt_b
    B_base = B_ptr + b * sB_b
    C_base = C_ptr + b * sC_b
    dy_base = dy_ptr + b * sdy_b
    out_base = b * seq_len * d_inner
    part_base = (b * n_dblocks + pid_d) * seq_len * d_state
    is_first = (offs_t == 0)[:, None, None]
    is_last = (offs_t == BLOCK_T - 1)[:, None, None]

    carry = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)  # decay_{t+1} g_{t+1} past the chunk
    dA_acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t = c * BLOCK_T + offs_t
        mask_t = t < seq_len
        mask_td = mask_t[:, None] & mask_d[None, :]
        mask_tn = mask_t[:, None] & mask_n[None, :]
        u = tl.cast(tl.load(u_base + t[:, None] * su_t + offs_d[None, :] * su_d,
                            mask=mask_td, other=0.0), tl.float32)
        dt = tl.cast(tl.load(dt_base + t[:, None] * sdt_t + offs_d[None, :] * sdt_d,
                             mask=mask_td, other=0.0), tl.float32)
        dy = tl.cast(tl.load(dy_base + t[:, None] * sdy_t + offs_d[None, :] * sdy_d,
                             mask=mask_td, other=0.0), tl.float32)
        Bt = tl.cast(tl.load(B_base + t[:, None] * sB_t + offs_n[None, :] * sB_n,
                             mask=mask_tn, other=0.0), tl.float32)
        Ct = tl.cast(tl.load(C_base + t[:, None] * sC_t + offs_n[None, :] * sC_n,
                             mask=mask_tn, other=0.0), tl.float32)
        # delta one step later inside the chunk (the last row's successor is in `carry`)
        mask_next = ((offs_t < BLOCK_T - 1) & (t + 1 < seq_len))[:, None] & mask_d[None, :]
        dt_next = tl.cast(tl.load(dt_base + (t[:, None] + 1) * sdt_t + offs_d[None, :] * sdt_d,
                                  mask=mask_next, other=0.0), tl.float32)
        has_prev = (tl.full([BLOCK_N], c, tl.int32) > 0)[:, None]  # chunk 0 starts from zero
        h0 = tl.load(states_ptr + ((b * n_chunks + c - 1) * d_state + offs_n[:, None]) * d_inner
                     + offs_d[None, :], mask=mask_nd & has_prev, other=0.0)

        # recompute the states of the chunk from its checkpoint
        decay = tl.exp(dt[:, None, :] * A[None, :, :])
        decay_first = tl.sum(tl.where(is_first, decay, 0.0), axis=0)
        dtu = dt * u
        drive = dtu[:, None, :] * Bt[:, :, None]
        _, hs = tl.associative_scan(
            (decay, drive + tl.where(is_first, decay * h0[None, :, :], 0.0)), 0, _combine)
        dC = tl.sum(hs * dy[:, None, :], axis=2)
        prev = hs - drive                        # decay_t * h_{t-1}

        # adjoint g_t = dL/dh_t = C_t dy_t + decay_{t+1} g_{t+1}, a reverse scan
        decay_next = tl.exp(dt_next[:, None, :] * A[None, :, :])
        cdy = dy[:, None, :] * Ct[:, :, None] + tl.where(is_last, carry[None, :, :], 0.0)
        _, g = tl.associative_scan((decay_next, cdy), 0, _combine, reverse=True)
        carry = decay_first * tl.sum(tl.where(is_first, g, 0.0), axis=0)

        gB = tl.sum(g * Bt[:, :, None], axis=1)
        g_prev = g * prev
        ddt = gB * u + tl.sum(g_prev * A[None, :, :], axis=1)
        du = gB * dt + Dv[None, :] * dy
        out_offs = out_base + t[:, None] * d_inner + offs_d[None, :]
        tl.store(ddt_ptr + out_offs, ddt, mask=mask_td)
        tl.store(du_ptr + out_offs, du, mask=mask_td)
        dB = tl.sum(g * dtu[:, None, :], axis=2)
        part_offs = part_base + t[:, None] * d_state + offs_n[None, :]
        tl.store(dB_ptr + part_offs, dB, mask=mask_tn)
        tl.store(dC_ptr + part_offs, dC, mask=mask_tn)
        dA_acc += tl.sum(g_prev * dt[:, None, :], axis=0)
        dD_acc += tl.sum(dy * u, axis=0)

    # per sequence: dA in [..., :d_state] and dD in [..., d_state] of a (d_state + 1) row
    dAD_base = dAD_ptr + (b * d_inner + offs_d) * (d_state + 1)
    tl.store(dAD_base[None, :] + offs_n[:, None], dA_acc, mask=mask_nd)
    tl.store(dAD_base + d_state, dD_acc, mask=mask_d)


def _fp32_contiguous(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float32 and x.is_contiguous():  # the usual case: skip two calls
        return x
    return x.to(torch.float32).contiguous()


def scan_forward(u, delta, A, B, C, D, store_states: bool, config: dict | None = None):
    """Launch the forward kernel. A: ([groups,] d_inner, d_state), D: ([groups,] d_inner).

    Returns y (u's dtype, contiguous) and the fp32 chunk-end states
    (batch, n_chunks, d_state, d_inner), or an empty (batch, 0) tensor without ``store_states``.
    """
    batch, seq_len, d_inner = u.shape
    groups, d_state = (A.shape[0] if A.dim() == 3 else 1), A.shape[-1]
    config = config or kernel_config(seq_len, d_inner, d_state)
    block_d, num_warps = config["fwd"]
    n_chunks = triton.cdiv(seq_len, config["block_t"])
    A, D = _fp32_contiguous(A), _fp32_contiguous(D)
    y = torch.empty((batch, seq_len, d_inner), dtype=u.dtype, device=u.device)
    if store_states:
        states = torch.empty((batch, n_chunks, d_state, d_inner), dtype=torch.float32,
                             device=u.device)
    else:
        states = torch.empty((batch, 0), dtype=torch.float32, device=u.device)
    grid = (batch, triton.cdiv(d_inner, block_d))
    _selective_scan_fwd_kernel[grid](
        u, delta, A, B, C, D, y, states,
        seq_len, d_inner, d_state, batch // groups, n_chunks,
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(),
        BLOCK_T=config["block_t"], BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(d_state),
        STORE_STATES=store_states, num_warps=num_warps)
    return y, states


def scan_backward(u, delta, A, B, C, D, states, dy, config: dict | None = None):
    """Launch the backward kernel; returns fp32 (du, ddelta, dA, dB, dC, dD), dA and dD shaped
    like A and D. ``states`` must come from ``scan_forward`` with the same config."""
    batch, seq_len, d_inner = u.shape
    groups, d_state = (A.shape[0] if A.dim() == 3 else 1), A.shape[-1]
    config = config or kernel_config(seq_len, d_inner, d_state)
    block_d, num_warps = config["bwd"]
    n_chunks = triton.cdiv(seq_len, config["block_t"])
    n_dblocks = triton.cdiv(d_inner, block_d)
    A, D = _fp32_contiguous(A), _fp32_contiguous(D)
    dev = u.device
    f32 = torch.float32
    du = torch.empty((batch, seq_len, d_inner), dtype=f32, device=dev)
    ddelta = torch.empty((batch, seq_len, d_inner), dtype=f32, device=dev)
    # partial sums: dB and dC per channel block, dA and dD per sequence
    dBC_part = torch.empty((2, batch, n_dblocks, seq_len, d_state), dtype=f32, device=dev)
    dAD_part = torch.empty((batch, d_inner, d_state + 1), dtype=f32, device=dev)
    _selective_scan_bwd_kernel[(batch, n_dblocks)](
        u, delta, A, B, C, D, dy, states,
        du, ddelta, dBC_part[0], dBC_part[1], dAD_part,
        seq_len, d_inner, d_state, batch // groups, n_chunks, n_dblocks,
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(), *dy.stride(),
        BLOCK_T=config["block_t"], BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(d_state),
        num_warps=num_warps)
    dB, dC = dBC_part.sum(2)
    dAD = dAD_part.view(groups, batch // groups, d_inner, d_state + 1).sum(1)
    dAD = dAD.view(*A.shape[:-1], d_state + 1)
    return du, ddelta, dAD[..., :d_state], dB, dC, dAD[..., d_state]


# -- registered as custom operators (torch.compile calls them opaquely; see long_conv) -------
@torch.library.custom_op("madbench::selective_scan", mutates_args=())
def selective_scan_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                      C: torch.Tensor, D: torch.Tensor, store_states: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``scan_forward``: y and the chunk-end states (empty without ``store_states``)."""
    return scan_forward(u, delta, A, B, C, D, store_states)


@selective_scan_op.register_fake
def _(u, delta, A, B, C, D, store_states):
    batch, seq_len, d_inner = u.shape
    d_state = A.shape[-1]
    f32 = torch.float32
    if store_states:
        # the chunk length depends on the sizes: specialised on them (a guard when symbolic)
        config = kernel_config(int(seq_len), int(d_inner), int(d_state))
        n_chunks = triton.cdiv(int(seq_len), config["block_t"])
        states = u.new_empty((batch, n_chunks, d_state, d_inner), dtype=f32)
    else:
        states = u.new_empty((batch, 0), dtype=f32)
    return u.new_empty((batch, seq_len, d_inner)), states


@torch.library.custom_op("madbench::selective_scan_backward", mutates_args=())
def selective_scan_backward_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                               B: torch.Tensor, C: torch.Tensor, D: torch.Tensor,
                               states: torch.Tensor, dy: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                          torch.Tensor, torch.Tensor, torch.Tensor]:
    """fp32 (du, ddelta, dA, dB, dC, dD); the states are recomputed when the forward pass
    stored none."""
    if states.numel() == 0 and u.shape[1] > 0:    # forward ran without checkpoints
        _, states = scan_forward(u, delta, A, B, C, D, True)
    du, ddelta, dA, dB, dC, dD = scan_backward(u, delta, A, B, C, D, states, dy)
    return du, ddelta, dA.clone(), dB.clone(), dC.clone(), dD.clone()   # views of shared sums


@selective_scan_backward_op.register_fake
def _(u, delta, A, B, C, D, states, dy):
    f32 = torch.float32
    batch, seq_len, _ = u.shape
    d_state = A.shape[-1]
    return (u.new_empty(u.shape, dtype=f32), u.new_empty(u.shape, dtype=f32),
            A.new_empty(A.shape, dtype=f32), u.new_empty((batch, seq_len, d_state), dtype=f32),
            u.new_empty((batch, seq_len, d_state), dtype=f32), D.new_empty(D.shape, dtype=f32))


def _autograd_setup(ctx, inputs, output):
    u, delta, A, B, C, D, _ = inputs
    _, states = output
    ctx.save_for_backward(u, delta, A, B, C, D, states)


def _autograd_backward(ctx, dy, _dstates):
    if dy is None:
        return (None,) * 7
    u, delta, A, B, C, D, states = ctx.saved_tensors
    grads = selective_scan_backward_op(u, delta, A, B, C, D, states, last_axis_contiguous(dy))
    inputs = (u, delta, A, B, C, D)
    out = tuple(None if not need else g if g.dtype == x.dtype else g.to(x.dtype)
                for g, x, need in zip(grads, inputs, ctx.needs_input_grad))
    return (*out, None)


selective_scan_op.register_autograd(_autograd_backward, setup_context=_autograd_setup)


@selective_scan_op.register_vmap
def _(info, in_dims, u, delta, A, B, C, D, store_states):
    """vmap folds the vmapped axis into the batch axis and the group axis."""
    size = info.batch_size

    def fold(x, dim, trailing):
        """Put the vmapped axis first and merge it with the next (batch or group) axis."""
        x = x.movedim(dim, 0) if dim is not None else x.expand(size, *x.shape)
        return x.reshape(-1, *x.shape[x.dim() - trailing:])

    trailing = (2, 2, 2, 2, 2, 1)  # u, delta, B, C: (seq_len, -); A: (d_inner, d_state); D
    args = [fold(x, dim, k) for x, dim, k in zip((u, delta, A, B, C, D), in_dims, trailing)]
    y, states = _apply(*args, store_states)
    unfold = lambda x: x.reshape(size, x.shape[0] // size, *x.shape[1:])  # noqa: E731
    return (unfold(y), unfold(states)), (0, 0)


def selective_scan_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                          B: torch.Tensor, C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The fused scan with the signature of the reference (A: (d_inner, d_state), D: (d_inner,))."""
    y, _ = _apply(u, delta, A, B, C, D, torch.is_grad_enabled())
    return y


def _apply(u, delta, A, B, C, D, store_states):
    """The scan op on channel-contiguous u and delta (so that the saved copies are too)."""
    return selective_scan_op(last_axis_contiguous(u), last_axis_contiguous(delta),
                             A, B, C, D, store_states)

