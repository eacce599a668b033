"""What a run's speed depends on, recorded next to its timings so runs on different machines can be compared.

Platform and Python, CPU model, cores, threads per core, clock and SIMD flags, the torch build (version, BLAS, the SIMD level its kernels use), torch's intra-op
threads, and the thread-count environment variables. Two machines of the same "2-core" kind can differ
2x in training speed; these are the first facts to compare (see docs/benchmarks.md).

    python -m ttstrain.machine_facts
"""

from __future__ import annotations

import json
import os
import platform

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def first_cpu_fields(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo as key -> value ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return first_cpu_fields().get("model name") or platform.processor() or platform.machine()


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")  # what torch's CPU kernels use


def cpu_topology(path: str = "/proc/cpuinfo") -> dict:
    """Threads per core (2 when the "cores" are hyperthreads sharing one core), clock and SIMD flags, from /proc/cpuinfo."""
    fields = first_cpu_fields(path)
    if not fields:
        return {}
    flags = set(fields.get("flags", "").split())
    siblings, cores = fields.get("siblings"), fields.get("cpu cores")
    return {"threads_per_core": int(siblings) // int(cores) if siblings and cores and int(cores) else None,
            "cpu_mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
            "simd": [f for f in SIMD_FLAGS if f in flags]}


def machine_facts() -> dict:
    import torch

    config = torch.__config__.show()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        **cpu_topology(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "mkl" if "BLAS_INFO=mkl" in config else ("openblas" if "openblas" in config.lower() else "other"),
        "cuda": torch.cuda.is_available(),
        "environment": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


if __name__ == "__main__":
    print(json.dumps(machine_facts(), indent=2))
