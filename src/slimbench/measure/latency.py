"""CPU latency and throughput, one timing code for every engine: PyTorch eager, torch.compile, ONNX Runtime.

Warm-up, then percentiles over timed repeats; the engine and the threads used are recorded with the result.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimbench.hardware import warn_if_busy
from slimbench.runtimes.onnx import onnx_session

ENGINES = ("pytorch-eager", "pytorch-compile", "onnxruntime", "openvino", "openvino-bf16", "litert")
# the arithmetic each engine runs a float model in: stated, never an engine's silent default
ENGINE_PRECISION = {"pytorch-eager": "as stored", "pytorch-compile": "as stored", "onnxruntime": "as exported",
                    "openvino": "f32", "openvino-bf16": "bf16", "litert": "as exported"}


@dataclass
class Latency:
    batch_size: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    threads: int
    repeats: int
    engine: str = "pytorch-eager"
    precision: str = "as stored"
    busy_cores: float | None = None  # cores other processes kept busy just before timing (None: unknown)


def time_calls(run: Callable[[], object], batch_size: int, warmup: int, repeats: int, threads: int, engine: str,
               sync: Callable[[], None] | None = None) -> Latency:
    busy = warn_if_busy(threads, "timing")  # one warning for every engine and batch size
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        if sync:
            sync()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    median = statistics.median(times)
    return Latency(
        batch_size=batch_size, median_ms=median, p90_ms=times[int(0.9 * (len(times) - 1))],
        p99_ms=times[int(0.99 * (len(times) - 1))], images_per_s=batch_size / (median / 1000),
        threads=threads, repeats=repeats, engine=engine, busy_cores=busy,
    )


@torch.no_grad()
def measure_latency(model: nn.Module, batch_size: int = 1, input_shape: tuple[int, ...] = (3, 32, 32),
                    warmup: int = 10, repeats: int = 50, channels_last: bool = True, compile: bool = False) -> Latency:
    """Time a PyTorch ``model`` in eval mode on random input (eager, or torch.compile'd)."""
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = torch.randn(batch_size, *input_shape, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if compile else model
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return time_calls(lambda: runner(x), batch_size, warmup, repeats, torch.get_num_threads(),
                      "pytorch-compile" if compile else "pytorch-eager", sync)


def measure_onnx_latency(path: str | Path, batch_size: int = 1, input_shape: tuple[int, ...] = (3, 32, 32),
                         warmup: int = 10, repeats: int = 50, threads: int | None = None) -> Latency:
    """Time an ONNX model with ONNX Runtime's CPU provider on random input of its declared type."""
    session = onnx_session(path, threads)
    declared = session.get_inputs()[0]
    dtype = np.float16 if "float16" in declared.type else np.float32
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(dtype)
    feed = {declared.name: x}
    result = time_calls(lambda: session.run(None, feed), batch_size, warmup, repeats,
                        session.get_session_options().intra_op_num_threads, "onnxruntime")
    result.precision = "as exported"
    return result


def measure_openvino_latency(path: str | Path, batch_size: int = 1, input_shape: tuple[int, ...] = (3, 32, 32),
                             warmup: int = 10, repeats: int = 50, threads: int | None = None,
                             precision: str = "f32") -> Latency:
    """Time an ONNX model on OpenVINO's CPU plugin at an explicit inference precision (f32 or bf16)."""
    from slimbench.runtimes.openvino import openvino_runner

    run = openvino_runner(path, batch_size, precision, threads)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    result = time_calls(lambda: run(x), batch_size, warmup, repeats, threads or torch.get_num_threads(),
                        "openvino" if precision == "f32" else f"openvino-{precision}")
    result.precision = precision
    return result


def measure_litert_latency(path: str | Path, batch_size: int = 1, input_shape: tuple[int, ...] = (3, 32, 32),
                           warmup: int = 10, repeats: int = 50, threads: int | None = None) -> Latency:
    """Time a .tflite file in the LiteRT interpreter (XNNPACK) on random input; an int8 file's input
    quantization and output dequantization are inside the timed call, as on a device. The file has a static
    batch of one: a batch of N is N invocations."""
    from slimbench.runtimes.litert import litert_runner

    run = litert_runner(path, threads)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    result = time_calls(lambda: run(x), batch_size, warmup, repeats, threads or torch.get_num_threads(), "litert")
    result.precision = "as exported"
    return result
