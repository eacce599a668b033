"""What a run's speed depends on, recorded next to its timings so runs on different machines can be compared.

Platform and Python, CPU model and cores, the torch build (version, BLAS, the SIMD level its kernels use), torch's intra-op
threads, and the thread-count environment variables. Two machines of the same "2-core" kind can differ
2x in training speed; these are the first facts to compare (see docs/benchmarks.md).

    python -m ttstrain.machine_facts
"""

from __future__ import annotations

import json
import os
import platform

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict:
    import torch

    config = torch.__config__.show()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "mkl" if "BLAS_INFO=mkl" in config else ("openblas" if "openblas" in config.lower() else "other"),
        "cuda": torch.cuda.is_available(),
        "environment": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


if __name__ == "__main__":
    print(json.dumps(machine_facts(), indent=2))
