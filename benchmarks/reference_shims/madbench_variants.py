"""Earlier forms of bundled layers, kept only to measure what a change moved (test tooling for
benchmarks/fidelity.py; not part of madbench)."""
import torch
import torch.nn.functional as F

from madbench_layers.mamba import Mamba
from madbench_layers.ops.selective_scan import selective_scan


class MambaBf16Step(Mamba):
    """The bundled Mamba before the step bias moved out of the projection: under bf16
    autocast ``softplus(dt_proj(dt))`` rounds the step (bias included) to bf16."""

    mixes_channels = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs = F.silu(self.conv(xs.transpose(1, 2))[..., :seq_len].transpose(1, 2))
        dt, B, C = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        dtype = torch.promote_types(x.dtype, torch.float32)
        A = -torch.exp(self.A_log.to(dtype))
        y = selective_scan(xs.to(dtype), delta.to(dtype), A, B.to(dtype), C.to(dtype),
                           self.D.to(dtype))
        return self.out_proj(y.to(x.dtype) * F.silu(z))
