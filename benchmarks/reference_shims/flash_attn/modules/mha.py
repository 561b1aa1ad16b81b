"""Stand-in for flash-attn's ``MHA``, so that mad-lab's attention layer runs without flash-attn
(test tooling for benchmarks/fidelity.py; not part of madbench).

The same module layout and arithmetic as flash-attn's MHA in the configuration mad-lab uses
(self-attention, no cross-attention, no grouped KV): ``Wqkv`` (a biased linear map to
``3 x embed_dim``, laid out as (three, heads, head_dim)), rotary embeddings on the first
``rotary_emb_dim`` channels of q and k (half-split pairs, base ``rotary_emb_base``), softmax
attention with scale ``softmax_scale`` (default head_dim ** -0.5), causal and optionally
windowed (``window_size = (left, right)``, -1 unbounded), and ``out_proj`` (biased). The
attention itself is PyTorch's scaled_dot_product_attention instead of the flash kernel.
"""
import torch
import torch.nn.functional as F
from torch import nn


def _rotate(x, rotary_dim, base):
    length = x.shape[-2]
    half = rotary_dim // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, device=x.device,
                                            dtype=torch.float32) / rotary_dim))
    angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * inv_freq
    cos, sin = angles.cos(), angles.sin()
    xr, rest = x[..., :rotary_dim].float(), x[..., rotary_dim:]
    x1, x2 = xr[..., :half], xr[..., half:]
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)
    return torch.cat([rotated, rest], dim=-1)


class MHA(nn.Module):
    def __init__(self, embed_dim, num_heads, rotary_emb_dim=0, dropout=0.0, causal=False,
                 window_size=(-1, -1), qkv_proj_bias=True, out_proj_bias=True,
                 softmax_scale=None, rotary_emb_base=10000.0, rotary_emb_interleaved=False,
                 cross_attn=False, num_heads_kv=None, dwconv=False, use_alibi=False,
                 device=None, dtype=None, **_ignored):
        super().__init__()
        if cross_attn or dwconv or use_alibi or rotary_emb_interleaved or \
                (num_heads_kv not in (None, num_heads)):
            raise NotImplementedError("the stand-in covers mad-lab's self-attention only")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.rotary_emb_dim, self.rotary_emb_base = int(rotary_emb_dim), rotary_emb_base
        self.causal, self.window_size, self.softmax_scale = causal, tuple(window_size), \
            softmax_scale
        self.Wqkv = nn.Linear(embed_dim, 3 * embed_dim, bias=qkv_proj_bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=out_proj_bias)

    def forward(self, x, **_ignored):
        batch, length, _ = x.shape
        qkv = self.Wqkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if self.rotary_emb_dim > 0:
            q = _rotate(q, self.rotary_emb_dim, self.rotary_emb_base)
            k = _rotate(k, self.rotary_emb_dim, self.rotary_emb_base)
        left, right = self.window_size
        if left < 0 and right < 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                               scale=self.softmax_scale)
        else:
            t = torch.arange(length, device=x.device)
            rel = t[None, :] - t[:, None]       # key - query
            mask = torch.ones(length, length, dtype=torch.bool, device=x.device)
            if self.causal:
                mask &= rel <= 0
            if left >= 0:
                mask &= rel >= -left
            if right >= 0:
                mask &= rel <= right
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               scale=self.softmax_scale)
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, self.embed_dim))
