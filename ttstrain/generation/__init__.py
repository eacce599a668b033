"""Generation backends behind one interface (see base.py): transformers, vLLM, scripted.

    from ttstrain.generation import SamplingParams, load_generator
    gen = load_generator("transformers", model="default")        # the shipped world policy
    gen = load_generator("vllm", model="Qwen/Qwen2.5-Math-1.5B")  # on a CUDA machine
"""

from __future__ import annotations

from ttstrain.generation.base import Completion, GenerationStats, Generator, PromptResult, SamplingParams, row_seed


# a backend is imported when it is asked for: torch, vLLM
def _transformers(**kw) -> Generator:
    from ttstrain.generation.hf import HFGenerator

    return HFGenerator(**kw)


def _vllm(**kw) -> Generator:
    from ttstrain.generation.vllm_backend import VLLMGenerator

    return VLLMGenerator(**kw)


BACKENDS = {"transformers": _transformers, "vllm": _vllm}


def load_generator(backend: str = "transformers", **kwargs) -> Generator:
    """Build a generator by backend name; kwargs go to the backend's constructor."""
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown generation backend {backend!r}; choose from {sorted(BACKENDS)}") from None
    return factory(**kwargs)


__all__ = ["BACKENDS", "Completion", "GenerationStats", "Generator", "PromptResult", "SamplingParams",
           "load_generator", "row_seed"]
