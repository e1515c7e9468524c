"""Where a distilled low-bit QAT step's time goes, and whether torch.compile buys it back.

A QAT epoch runs 1.8-2x a float epoch on the CPU (BENCHMARKS sections 7 and 42). Its step is the teacher's forward
pass (no gradients), then the student's forward, backward and SGD step through Brevitas's fake quantization. This
times those parts on one batch of random images, round by round (the machine's noise falls on every part alike),
and with ``--compiled`` the student's step again under torch.compile with static shapes (dynamic shapes fail in
Inductor's convolution backward, ValueRangeError, which is why QAT refuses ``finetune.compile``), its first call
(the compilation) timed apart. ``--profile`` prints the student step's operators by their own time.

Both run as the trainer runs them: in its precision on this host (``--precision auto``: bf16 autocast where the
CPU computes bf16 natively, fp32 otherwise) and in its memory layouts (student and teacher each channels_last where
the trainer would choose it).

Usage: python benchmarks/qat_step.py [STUDENT.pt] [--teacher TEACHER.pt] [--batch 128] [--rounds 5]
       [--threads 2] [--precision auto|fp32|bf16] [--compiled] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from slimbench.artifact.core import load_model
from slimbench.hardware import host
from slimbench.measure.accuracy import autocast, resolve_precision
from slimbench.train.loop import channels_last_is_safe, eager_channels_last, preferred_channels_last


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", nargs="?", default="benchmarks/results/best/model.pt")
    parser.add_argument("--teacher", default="benchmarks/results/resnet20-strong/model.pt")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Brevitas's notes on optional CUDA kernels
    student, _ = load_model(args.student)
    teacher, _ = load_model(args.teacher)
    cpu = torch.device("cpu")
    precision = resolve_precision(args.precision, cpu)
    student_layout = preferred_channels_last(cpu, False) and channels_last_is_safe(student)
    teacher_layout = eager_channels_last(cpu, teacher)
    layout = {True: torch.channels_last, False: torch.contiguous_format}
    student.to(memory_format=layout[student_layout]).train()
    teacher.to(memory_format=layout[teacher_layout]).eval()
    images = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=layout[student_layout])
    teacher_images = images.contiguous(memory_format=layout[teacher_layout])
    labels = torch.randint(0, 10, (args.batch,))
    optimizer = torch.optim.SGD(student.parameters(), lr=1e-4, momentum=0.9)

    def teacher_forward() -> None:
        with torch.no_grad(), autocast(cpu, precision):
            teacher(teacher_images)

    def step(model: torch.nn.Module) -> None:
        with autocast(cpu, precision):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    parts: dict[str, Callable[[], object]] = {"teacher forward": teacher_forward, "student step (eager)":
                                              lambda: step(student)}
    if args.compiled:
        compiled = torch.compile(student, dynamic=False)
        print(f"compiling the student's step: {_seconds(lambda: step(compiled)):.1f} s (first call)")
        parts["student step (compiled, static)"] = lambda: step(compiled)
    for call in parts.values():  # warm-up
        call()
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, call in parts.items():
            times[name].append(_seconds(call))
    print(f"{host().describe()}, {args.threads} threads, batch {args.batch}, {precision}, student "
          f"{'channels_last' if student_layout else 'contiguous'}, teacher "
          f"{'channels_last' if teacher_layout else 'contiguous'}, median of {args.rounds} rounds")
    eager = statistics.median(times["student step (eager)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:34s} {median * 1000:8.1f} ms   {median / eager:5.2f}x the eager student step")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step(student)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
