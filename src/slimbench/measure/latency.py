"""CPU latency and throughput of a PyTorch model: warm-up, then percentiles over timed repeats."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Latency:
    batch_size: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    threads: int
    repeats: int


@torch.no_grad()
def measure_latency(model: nn.Module, batch_size: int = 1, input_shape: tuple[int, ...] = (3, 32, 32),
                    warmup: int = 10, repeats: int = 50, channels_last: bool = True) -> Latency:
    """Time ``model`` in eval mode on random input; the threads used are recorded with the result."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.randn(batch_size, *input_shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    median = statistics.median(times)
    return Latency(
        batch_size=batch_size, median_ms=median, p90_ms=times[int(0.9 * (len(times) - 1))],
        p99_ms=times[int(0.99 * (len(times) - 1))], images_per_s=batch_size / (median / 1000),
        threads=torch.get_num_threads(), repeats=repeats,
    )
