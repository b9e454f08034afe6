"""OpenVoice V2 tone-colour converter: our own runtime for the official checkpoint.

``ToneColorConverter.from_checkpoint_dir`` loads ``converter/config.json`` +
``converter/checkpoint.pth`` (strictly); ``embed`` turns reference speech into a 256-d tone-colour
embedding, ``convert`` re-voices synthesised speech from a source embedding to a target one,
many items per forward pass with each result equal to the item run alone.
"""

from harmonyspeech.models.openvoice.converter import ConversionItem, ToneColorConverter
from harmonyspeech.models.openvoice.fixtures import build_converter_checkpoint
from harmonyspeech.models.openvoice.hparams import ConverterHParams

__all__ = [
    "ConversionItem",
    "ConverterHParams",
    "ToneColorConverter",
    "build_converter_checkpoint",
]
