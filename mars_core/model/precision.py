"""Which dtype the fine-tuned model's training steps run in on a CPU.

bfloat16 autocast pays only where the CPU multiplies bfloat16 in hardware (AMX tiles, AVX512-BF16: Sapphire
Rapids and later); elsewhere it would be emulated, so it stays off. On a GPU accelerate's --precision decides.
"""

from __future__ import annotations

import functools

import torch

from mars_core.model.reward_config import RewardModelConfig


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16): only there does autocast pay."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without the probes: assume not
        return False


def native_bfloat16(device: str) -> bool:
    """Whether bfloat16 weights pay on this device: CUDA that supports them, or a CPU with native bf16."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_native_bf16()


def training_dtype(config: RewardModelConfig, device: torch.device) -> torch.dtype:
    """The dtype of the training steps' matmuls: bfloat16 on a CPU that has it (``cpu_bf16``), else float32.

    On a GPU, --precision (accelerate's autocast) decides instead. Only the steps: the probe's features, the
    validation checks and every score are float32, so step 0 is still exactly the linear model.
    """
    native = device.type == "cpu" and config.cpu_bf16 and cpu_has_native_bf16()
    return torch.bfloat16 if native else torch.float32
