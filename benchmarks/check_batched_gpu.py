"""Does the batched (vmap) engine train attention hybrids on CUDA? One epoch of the
in-context-recall baseline, two configurations, bf16 and fp32; prints divergence flags and
train losses (an H100 run before the attention fix diverged in bf16 and raised "LSE is not
correctly aligned" in fp32)."""
import argparse
import dataclasses
import sys

import torch

from madbench.architecture import resolve_architecture
from madbench.batched import train_batched
from madbench.model import build_model
from madbench.protocol import PRESETS
from madbench.tasks import generate_splits, get_task

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("archs", nargs="?", default="mH-Sg-mA-Sg",
                    help="architectures, comma-separated (default: mH-Sg-mA-Sg)")
archs = parser.parse_args().archs.split(",")
if not torch.cuda.is_available():
    sys.exit("error: needs a CUDA device")
task = get_task("in-context-recall")
tr, te = generate_splits(task, "baseline", 0)
x, y, tx, ty = (torch.from_numpy(a).cuda() for a in (tr.inputs, tr.targets, te.inputs, te.targets))
for arch in archs:
    spec = resolve_architecture(arch)
    proto = dataclasses.replace(PRESETS["paper"], epochs=1)
    for precision in ("bf16", "fp32"):
        results = train_batched(lambda: build_model(spec, 16, x.shape[1]), (x, y), (tx, ty), 16,
                                proto.configs()[:2], proto, 0, precision)
        print(arch, precision, [(r.diverged, round(r.train_loss, 3)) for r in results],
              flush=True)
