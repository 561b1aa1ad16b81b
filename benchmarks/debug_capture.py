"""Which part of the batched step breaks CUDA-graph capture? One subprocess per variant."""
import dataclasses
import os
import subprocess
import sys
import time


def child(variant: str) -> None:
    import torch
    from torch import nn
    from madbench.batched import train_batched
    from madbench.protocol import PRESETS
    proto = dataclasses.replace(PRESETS["paper"], epochs=3, batch_size=128)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 16, (1024, 64), generator=g).cuda()
    y = x.clone()

    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(16, 64)
            self.head = nn.Linear(64, 16)

        def forward(self, t):
            return self.head(torch.relu(self.emb(t)))

    if variant == "doc":                   # the PyTorch docs' whole-network capture pattern
        model = Lookup().cuda()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=True)
        sx, sy = x[:128].clone(), y[:128].clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(sx).reshape(-1, 16), sy.reshape(-1)).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        try:
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                loss = nn.functional.cross_entropy(model(sx).reshape(-1, 16), sy.reshape(-1))
                loss.backward()
                opt.step()
            graph.replay()
            torch.cuda.synchronize()
            print(f"doc pattern: ok, loss {loss.item():.4f}", flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"doc pattern: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:150]}", flush=True)
        return
    if variant.startswith("lookup"):
        make = Lookup
    else:
        from madbench.architecture import resolve_architecture
        from madbench.model import build_model
        spec = resolve_architecture(variant.split(":")[1][:-1])
        make = lambda: build_model(spec, 16, 64)  # noqa: E731
    configs = [(1e-3, 0.0)] if variant.endswith("1") else [(1e-3, 0.0), (5e-4, 0.1)]
    out = []
    for capture in (False, True):
        t = time.perf_counter()
        try:
            rs = train_batched(make, (x, y), (x, y), 16, configs, proto, 0, "bf16", capture=capture)
            torch.cuda.synchronize()
            out.append(f"capture={capture}: {(time.perf_counter() - t):.2f}s "
                       f"{rs[0].seconds / rs[0].steps * 1e3:.2f}ms/step loss={[round(r.train_loss, 4) for r in rs]}")
        except Exception as exc:  # noqa: BLE001
            out.append(f"capture={capture}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
            break
    print(f"{variant:28s} mode={os.environ.get('MADBENCH_CAPTURE_ERROR_MODE')}: " + " | ".join(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        child(sys.argv[2])
    else:
        for mode in ("thread_local",):
            for variant in sys.argv[1].split(","):
                subprocess.run([sys.executable, __file__, "child", variant], timeout=240,
                               env={**os.environ, "MADBENCH_CAPTURE_ERROR_MODE": mode},
                               stderr=subprocess.DEVNULL)
