"""The precision of a HiFi-GAN decoder (MeloTTS's and OpenVoice's alike).

The decoder dominates both networks' cost and is the only part that may run in half precision:
everything that decides an item's length stays float32, so a lower precision changes only the
waveform's rounding, never its duration.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

DECODER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Config names of the decoder precisions; ``auto`` picks one (:func:`resolve_decoder_dtype`)."""


def resolve_decoder_dtype(dtype: torch.dtype | str, device: str | torch.device) -> torch.dtype:
    """The torch dtype for a configured decoder precision.

    ``auto`` is the fastest that keeps batches exact: bfloat16 on CPUs with native bf16 (on
    CPU the decoders run item by item, so a batch equals its items alone whatever the
    precision), float32 elsewhere. ``float16`` is refused on CPUs without native float16
    (AMX-FP16), where oneDNN emulates it: a float16 MeloTTS network ran at 0.27x real time on
    2 AVX-512 cores, against 5.8x in float32.

    Raises:
        ValueError: An unknown name, or float16 on a CPU that emulates it.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    on_cpu = torch.device(device).type == "cpu"
    if dtype == "auto":
        return torch.bfloat16 if on_cpu and cpu_has_native_bf16() else torch.float32
    try:
        resolved = DECODER_DTYPES[dtype]
    except KeyError:
        choices = sorted(DECODER_DTYPES)
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {choices} or auto") from None
    if resolved == torch.float16 and on_cpu and not cpu_has_native_fp16():
        raise ValueError(
            "dtype float16 is emulated on this CPU (about 20x slower than float32); "
            "use bfloat16, float32 or auto"
        )
    return resolved


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), so that oneDNN
    convolves bfloat16 at about twice the float32 rate; elsewhere bfloat16 is emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_has_native_fp16() -> bool:
    """Whether this CPU computes in float16 natively (AMX-FP16)."""
    return getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)()


def decoder_dtype_name(decoder: torch.nn.Module) -> str:
    """The precision a prepared decoder runs in, by its config name (what ``auto`` chose)."""
    dtype = next(decoder.parameters()).dtype
    return str(dtype).removeprefix("torch.")


def use_exact_cuda_convolutions(device: torch.device) -> None:
    """On CUDA, turn cuDNN's TF32 convolutions off for the whole process (PyTorch's default is
    on): with their 10-bit mantissas a MeloTTS item's durations moved with its batch mates (a
    duration rounded up one frame more or less changes the item's length), and float32
    batches differed from items run alone by up to 5e-4 (measured on an H200). Half-precision
    decoders are unaffected; float32 ones are exact again."""
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        logger.info("CUDA: cuDNN TF32 convolutions off, so batches stay exact")
        torch.backends.cudnn.allow_tf32 = False
