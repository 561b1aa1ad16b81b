"""Small models and data that several test files share (imported as ``helpers``; pytest puts
this folder on the import path). Each has a behaviour known independently of madbench."""
import math

import torch
from torch import nn

from madbench.trainer import train


class Lookup(nn.Module):
    """Predicts each target from the current token alone (enough for an identity task)."""

    def __init__(self, vocab=8, dim=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        return self.head(self.emb(x))


def identity_data(n=64, length=6, vocab=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = x.clone()
    y[:, ::2] = -100                                   # only odd positions are scored
    return x, y


class SometimesNaN(Lookup):
    """Overflows (infinite logits, NaN loss) only once a head weight exceeds 0.6, which a
    learning rate of 1.0 reaches in one step and 1e-3 never does here."""

    def forward(self, x):
        out = super().forward(x)
        return out * torch.exp(torch.relu(self.head.weight.abs().max() - 0.5) * 1000)


#: (lr, weight decay) configurations the sweep engines train side by side in tests
CONFIGS = [(1e-3, 0.0), (1e-3, 0.1), (1e-2, 0.0), (1e-2, 0.1)]


def sequential(make, configs, proto):
    out = []
    for lr, wd in configs:
        torch.manual_seed(0)
        out.append(train(make(), identity_data(), identity_data(seed=1), 8, lr, wd, proto, 0))
    return out


class LinearRecurrence(nn.Module):
    """h_t = a * h_{t-1} + B x_t, y_t = C h_t with n distinct decays: state exactly n."""

    def __init__(self, dim, state=12, declared=None):
        super().__init__()
        self.n, self.declared = state, state if declared is None else declared
        self.decay = nn.Parameter(torch.linspace(0.5, 0.95, state))
        self.B = nn.Parameter(torch.randn(state, dim) / math.sqrt(dim))
        self.C = nn.Parameter(torch.randn(dim, state) / math.sqrt(state))

    def forward(self, x):
        h, out = x.new_zeros(x.shape[0], self.n), []
        for t in range(x.shape[1]):
            h = self.decay * h + x[:, t] @ self.B.T
            out.append(h @ self.C.T)
        return torch.stack(out, 1)

    def state_size(self, seq_len):
        return self.declared


def as_board_entry(doc, board):
    """A copy of a (smoke) submission dressed as an entry of ``board``, for tests of what reads
    boards without re-validating them (render, agree)."""
    import copy

    from madbench.leaderboard.boards import BOARDS
    from madbench.protocol import PRESETS
    preset = PRESETS[BOARDS[board]]
    entry = copy.deepcopy(doc)
    entry["board"], entry["protocol"] = board, {**preset.to_dict(), "hash": preset.hash}
    return entry


def eval_record(**fields):
    """A stored eval record of the shape the store reads (``madbench.records.RECORD_FIELDS``):
    each field an empty value of its type, ``fields`` over them; for tests of tools that read
    a few fields of hand-made records."""
    from madbench.records import RECORD_FIELDS
    return {**{name: kind() for name, kind in RECORD_FIELDS.items()}, **fields}


def scaling_record(**fields):
    """A stored scaling record of the shape the store reads (``SCALING_FIELDS``), as
    ``eval_record`` makes an eval one."""
    from madbench.records import SCALING_FIELDS
    return {**{name: kind() for name, kind in SCALING_FIELDS.items()}, "kind": "scaling",
            **fields}


def assert_causal_prefixes(layer, x, cuts):
    """The causality property of a sequence mixer, checked without madbench: for each t in
    ``cuts``, new random inputs after position t leave the outputs up to t unchanged (to
    1e-12) and change those after it. Returns ``layer(x)``."""
    y = layer(x)
    for t in cuts:
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
        y2 = layer(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:])
    return y
