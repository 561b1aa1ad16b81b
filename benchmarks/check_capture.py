"""Does the CUDA-graph path of the batched engine train exactly like the eager path?
One fresh process per (architecture, kernel backend). Prints loss/accuracy/time per mode."""
import dataclasses
import os
import subprocess
import sys
import time

ARCHS = sys.argv[1].split(",") if len(sys.argv) > 1 else ["hyena", "mH-Sg-mA-Sg"]


def child(arch: str, epochs: int) -> None:
    import torch
    from madbench.architecture import resolve_architecture
    from madbench.batched import train_batched
    from madbench.model import build_model
    from madbench.protocol import PRESETS
    from madbench.tasks import generate_splits, get_task
    task = get_task("in-context-recall")
    tr, te = generate_splits(task, "baseline", 0)
    x, y, tx, ty = (torch.from_numpy(a).cuda() for a in (tr.inputs, tr.targets, te.inputs, te.targets))
    spec = resolve_architecture(arch)
    make = lambda: build_model(spec, 16, x.shape[1])  # noqa: E731
    proto = dataclasses.replace(PRESETS["paper"], epochs=epochs)
    for capture in (False, True):
        t = time.perf_counter()
        try:
            rs = train_batched(make, (x, y), (tx, ty), 16, [(1e-3, 0.0), (5e-4, 0.1)], proto, 0,
                               "bf16", capture=capture)
            torch.cuda.synchronize()
            print(f"  {arch:14s} kernels={os.environ.get('MADBENCH_KERNELS', 'auto'):9s} "
                  f"capture={capture!s:5s} {time.perf_counter() - t:6.1f}s "
                  f"{rs[0].seconds / rs[0].steps * 1e3:6.2f} ms/step "
                  f"train_loss={[round(r.train_loss, 4) for r in rs]} acc={[round(r.accuracy, 4) for r in rs]}",
                  flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"  {arch:14s} capture={capture} FAILED {type(exc).__name__}: {str(exc)[:300]}",
                  flush=True)
            return


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "child":
        child(sys.argv[1], int(sys.argv[3]))
    else:
        epochs = int(os.environ.get("EPOCHS", "3"))
        for arch in ARCHS:
            for kernels in ("auto", "reference"):
                env = {**os.environ, "MADBENCH_KERNELS": kernels}
                subprocess.run([sys.executable, __file__, arch, "child", str(epochs)], env=env,
                               timeout=300)
