"""The precision of a HiFi-GAN decoder (MeloTTS's and OpenVoice's alike).

The decoder dominates both networks' cost and is the only part that may run in half precision:
everything that decides an item's length stays float32, so a lower precision changes only the
waveform's rounding, never its duration.
"""

from __future__ import annotations

import torch

DECODER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Config names of the decoder precisions; ``auto`` picks one (:func:`resolve_decoder_dtype`)."""


def resolve_decoder_dtype(dtype: torch.dtype | str, device: str | torch.device) -> torch.dtype:
    """The torch dtype for a configured decoder precision.

    ``auto`` is the fastest that keeps batches exact: bfloat16 on CPUs with native bf16 (on
    CPU the decoders run item by item, so a batch equals its items alone whatever the
    precision), float32 elsewhere.

    Raises:
        ValueError: An unknown name.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        on_cpu = torch.device(device).type == "cpu"
        return torch.bfloat16 if on_cpu and cpu_has_native_bf16() else torch.float32
    try:
        return DECODER_DTYPES[dtype]
    except KeyError:
        choices = sorted(DECODER_DTYPES)
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {choices} or auto") from None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), so that oneDNN
    convolves bfloat16 at about twice the float32 rate; elsewhere bfloat16 is emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def decoder_dtype_name(decoder: torch.nn.Module) -> str:
    """The precision a prepared decoder runs in, by its config name (what ``auto`` chose)."""
    dtype = next(decoder.parameters()).dtype
    return str(dtype).removeprefix("torch.")
