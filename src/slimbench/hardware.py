"""What the machine offers: native bf16, int8 dot-product instructions, SIMD width, CUDA.

One place reads the hardware, and one place lets tests and users pretend to be another machine:
``SLIMBENCH_HOST=avx2`` (or ``avx512``, ``avx512-bf16``, ``arm-neon``) in the environment, or
:func:`assume_host` in code. Every branch that depends on the CPU (bf16 autocast in training, ONNX
Runtime's ``reduce_range``, the channel multiple of structured pruning) asks :func:`host` and nothing else,
so the default test suite can run each branch whatever machine CI lands on. bf16 arithmetic is emulated,
correct but slow, where the CPU lacks it; the forced branches are exercised on tiny models.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from slimbench.errors import ConfigError

HOST_ENV = "SLIMBENCH_HOST"


@dataclass(frozen=True)
class Host:
    """The capabilities that change what slimbench does (never how correct it is)."""

    cpu_name: str
    simd_bits: int  # widest vector registers the CPU kernels use: 128 (NEON/SSE), 256 (AVX2), 512 (AVX-512)
    native_bf16: bool  # AVX512-BF16 or AMX-BF16 (x86), BF16 extension (Arm)
    int8_dot: bool  # VNNI / AMX-INT8 (x86), dot-product instructions (Arm): u8*s8 without saturation
    cuda: bool = False
    forced: str | None = None  # the profile name when assumed rather than read off the machine

    @property
    def cpu_class(self) -> str:
        """The class BENCHMARKS.md files figures under: ``avx512-bf16``, ``avx512``, ``avx2``, ``arm-neon``..."""
        if self.simd_bits >= 512:
            return "avx512-bf16" if self.native_bf16 else "avx512"
        if self.simd_bits == 256:
            return "avx2"
        if self.cpu_name.startswith("arm") or platform.machine() in ("aarch64", "arm64"):
            return "arm-neon"
        return "sse"

    def describe(self) -> str:
        extras = [name for name, on in (("bf16", self.native_bf16), ("int8-dot", self.int8_dot)) if on]
        label = f"{self.cpu_class} ({', '.join(extras) or 'no bf16, no int8-dot'})"
        return label + (f", assumed via {HOST_ENV}={self.forced}" if self.forced else "")


# Profiles a test or a user can assume. The channel multiple follows the kernels' blocking: 8 fp32 lanes on
# AVX2, 16 on AVX-512 (whose VNNI int8 kernels block output channels by 16 too), 8 on Arm NEON (4 fp32 lanes,
# but int8 dot-product kernels block by 8 and more).
PROFILES: dict[str, Host] = {
    "avx2": Host("assumed x86-64 AVX2", 256, native_bf16=False, int8_dot=False),
    "avx512": Host("assumed x86-64 AVX-512 VNNI", 512, native_bf16=False, int8_dot=True),
    "avx512-bf16": Host("assumed x86-64 AVX-512 BF16 VNNI", 512, native_bf16=True, int8_dot=True),
    "arm-neon": Host("arm: assumed Armv8.2 NEON dotprod", 128, native_bf16=False, int8_dot=True),
}
CHANNEL_MULTIPLES = {"avx2": 8, "avx512": 16, "avx512-bf16": 16, "arm-neon": 8, "sse": 4}

_assumed: list[Host] = []


def read_cpuinfo() -> str | None:
    """Linux's /proc/cpuinfo (the CPU's name and instruction-set flags); None where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def host_from_cpuinfo(text: str | None) -> Host:
    """The capabilities that /proc/cpuinfo's ``text`` describes (an unknown CPU: AVX2 without extras)."""
    if text is None:  # macOS, Windows: no flags to read; the conservative x86/Arm defaults
        arm = platform.machine() in ("aarch64", "arm64")
        return Host(platform.processor() or platform.machine() or "unknown", 128 if arm else 256,
                    native_bf16=False, int8_dot=arm)
    name = "unknown"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model name") and name == "unknown":
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    if "asimd" in flags:  # Arm: NEON is 128-bit; bf16 and dotprod are their own features
        return Host(f"arm: {name}", 128, native_bf16="bf16" in flags, int8_dot="asimddp" in flags)
    simd = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    return Host(name, simd, native_bf16=bool(flags & {"avx512_bf16", "amx_bf16"}),
                int8_dot=bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}))


@lru_cache(maxsize=1)
def _detected() -> Host:
    detected = host_from_cpuinfo(read_cpuinfo())
    try:
        import torch

        return replace(detected, cuda=torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        return detected


def profile(name: str) -> Host:
    """A named profile (``avx2``, ``avx512``, ``avx512-bf16``, ``arm-neon``), or a clear error."""
    if name not in PROFILES:
        raise ConfigError(f"unknown host profile {name!r}; choose one of {', '.join(PROFILES)}")
    return replace(PROFILES[name], forced=name)


def host() -> Host:
    """This machine's capabilities, unless a profile is assumed (:func:`assume_host`, ``$SLIMBENCH_HOST``)."""
    if _assumed:
        return _assumed[-1]
    forced = os.environ.get(HOST_ENV)
    if forced:
        return replace(profile(forced), cuda=_detected().cuda)
    return _detected()


@contextlib.contextmanager
def assume_host(name_or_host: str | Host) -> Iterator[Host]:
    """Within the block, :func:`host` answers as the named profile would (tests run every branch this way)."""
    chosen = profile(name_or_host) if isinstance(name_or_host, str) else name_or_host
    _assumed.append(chosen)
    try:
        yield chosen
    finally:
        _assumed.pop()


def channel_multiple(target: str | None = None) -> int:
    """The channel multiple that keeps pruned layers on whole SIMD blocks of ``target`` (default: this host)."""
    if target is None or target == "auto":
        return CHANNEL_MULTIPLES[host().cpu_class]
    if target not in CHANNEL_MULTIPLES:
        raise ConfigError(f"unknown round_to target {target!r}; use auto, a number, or one of "
                          f"{', '.join(k for k in CHANNEL_MULTIPLES if k != 'sse')}")
    return CHANNEL_MULTIPLES[target]


BUSY_CORES = 0.75  # other processes' load worth a word: below it, a shell, an editor, the test runner's own noise


class BusyMachineWarning(UserWarning):
    """Other processes hold the cores a run is about to use: its timings, and theirs, will not be what they are alone."""


def _cpu_jiffies(cores: set[int], stat_text: str) -> tuple[int, int]:
    """(busy, total) CPU time of ``cores`` since boot, in jiffies, from /proc/stat's per-core lines."""
    busy = total = 0
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return busy, total


def _own_cores() -> set[int]:
    """The cores this process may run on (its affinity where the OS has one, else every core)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def busy_cores(interval: float = 0.1, read_stat: Callable[[], str] | None = None) -> float | None:
    """How many of this process's cores other processes keep busy: sampled over ``interval`` seconds while this
    one sleeps. None where the kernel does not say (no /proc/stat: macOS, Windows)."""
    cores = _own_cores()
    read = read_stat or (lambda: Path("/proc/stat").read_text())
    try:
        busy_before, total_before = _cpu_jiffies(cores, read())
        time.sleep(interval)
        busy_after, total_after = _cpu_jiffies(cores, read())
    except (OSError, ValueError):
        return None
    elapsed = total_after - total_before
    return len(cores) * (busy_after - busy_before) / elapsed if elapsed > 0 else None


def warn_if_busy(threads: int, what: str, busy: float | None = None) -> float | None:
    """Warn when ``threads`` more threads would not fit beside what already runs: two two-thread torch processes on
    two cores each run several times slower (5.6x measured for a QAT epoch), far worse than taking turns.
    Returns the busy cores it saw (None where unknown)."""
    cores = len(_own_cores())
    busy = busy_cores() if busy is None else busy
    if busy is not None and busy >= BUSY_CORES and busy + threads > cores + 0.5:
        warnings.warn(f"{what}: other processes keep {busy:.0f} of the {cores} cores busy and this one will use "
                      f"{threads} thread{'s' * (threads > 1)}; both will run several times slower than one after the "
                      f"other (wait for them, or give each run threads that add up to {cores} at most: "
                      f"OMP_NUM_THREADS)", BusyMachineWarning, stacklevel=2)
    return busy
