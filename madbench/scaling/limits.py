"""The ranges ``madbench scaling`` accepts for its inputs, each with its reason; checked before
any work (no torch or numpy here, so that the command line reads them without a slow import).

- **Sizes** (``WIDTHxDEPTH``): width 8 to ``MAX_WIDTH``, depth 1 to ``MAX_DEPTH``
  sequence-mixer blocks. The paper's largest model is d 3,712 with 41 layers (7B, Table C.2);
  the bounds leave room for the largest dense models published (width 16,384 and 126 layers
  at 405B parameters) so that ``scaling flops`` can count them, while a size such as
  100000000x100000000 (whose FLOP count, one layer at a time, ran until killed) is refused.
- **Sequence length**: 1 (``flops``; ``run`` needs 2) to ``MAX_SEQ_LEN``, 128k tokens, 16 times
  the 8k at which the paper measures state (Finding 8) and the context of today's long-context
  models. ``scaling run`` checks causality at its length before anything else: on a 2-core CPU
  that check of the smallest Transformer++ took 36 s at 8,192 and 350 s at 32,768, growing
  with the square of the length; at 100,000,000 it ran out of memory. A dry run leaves a length
  over 1,024 to the run (``verdict.dry_run_lengths``, as eval's dry run does).
- **Tokens per batch** (``--batch-size`` times ``--seq-len``): at most ``MAX_BATCH_TOKENS``,
  4,194,304, twice the paper's largest batch (2,097,152 tokens at 2e21, Table C.1;
  ``--batch-size paper`` stays below it). ``--batch-size 1000000000000`` passed the plan and
  the causality check, then failed at its first step allocating 8 TB.
- **Bootstrap replicates**: at least ``MIN_BOOTSTRAP`` (0 for none where the command offers
  it). On simulated IsoFLOP groups of 3 to 7 sizes (2% and 10% noise, 100 groups each), 5 or 10
  replicates gave loss bands that missed their own vertex in up to 11% of the groups (a few
  usable replicates, all on one side of it), 15 or more in none; 20 leaves a margin.
"""
from __future__ import annotations

from ..errors import UsageError

MIN_WIDTH = 8
MAX_WIDTH = 16_384
MAX_DEPTH = 256
MAX_SEQ_LEN = 131_072
MAX_BATCH_TOKENS = 4_194_304
MIN_BOOTSTRAP = 20


def check_size(width: int, depth: int, what: str = "model size") -> None:
    """UsageError unless ``MIN_WIDTH <= width <= MAX_WIDTH`` and ``1 <= depth <= MAX_DEPTH``."""
    if not (MIN_WIDTH <= width <= MAX_WIDTH and 1 <= depth <= MAX_DEPTH):
        raise UsageError(f"{what} {width}x{depth} is out of bounds: width {MIN_WIDTH} to "
                         f"{MAX_WIDTH:,}, depth 1 to {MAX_DEPTH} (docs/scaling.md, 'Limits')")


def check_seq_len(seq_len: int, what: str = "sequence length") -> None:
    """UsageError unless ``1 <= seq_len <= MAX_SEQ_LEN``."""
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise UsageError(f"{what} {seq_len:,} is out of bounds: 1 to {MAX_SEQ_LEN:,} "
                         "(docs/scaling.md, 'Limits')")


def check_batch(batch_size: int, seq_len: int, what: str = "--batch-size") -> None:
    """UsageError unless ``batch_size * seq_len <= MAX_BATCH_TOKENS``."""
    if batch_size * seq_len > MAX_BATCH_TOKENS:
        raise UsageError(f"{what} {batch_size:,} at sequence length {seq_len:,} is "
                         f"{batch_size * seq_len:,} tokens per batch, out of bounds: at most "
                         f"{MAX_BATCH_TOKENS:,} (docs/scaling.md, 'Limits')")
