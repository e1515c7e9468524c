"""Seconds per training step of the brief's architectures (fp32, Adam, random 32x32 input), channels_last and NCHW.

A bare loop, no data pipeline: it sizes what a study costs before spending hours (BENCHMARKS.md section 8).
Usage: .venv/bin/python benchmarks/step_time.py
"""
import time

import torch

from slimbench.models import build_model

torch.set_num_threads(2)
CASES = [  # the brief's batch sizes
    ({"model": "resnet34", "stem": "imagenet"}, 256),
    ({"model": "densenet121", "stem": "imagenet", "num_classes": 1000}, 180),
    ({"model": "resnet20"}, 128),
    ({"model": "preactresnet18"}, 128),
]
for spec, bs in CASES:
    for channels_last in (True, False):
        model = build_model(spec)
        x, y = torch.randn(bs, 3, 32, 32), torch.randint(0, 10, (bs,))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        times = []
        for _ in range(4):
            t = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        per = min(times[1:])  # the first step pays one-off allocation
        print(spec["model"], "cl" if channels_last else "nchw", bs, f"{per:.3f}s/step",
              f"epoch~{per * 45000 / bs:.0f}s", flush=True)
