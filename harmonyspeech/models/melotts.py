"""MeloTTS as an engine adapter: sentence text in, 44.1 kHz audio out, many sentences per pass.

Per batch: the text frontend turns each sentence into phone, tone and language ids (a sentence
the frontend rejects fails alone); one shared BERT computes the features of every sentence in one
forward pass on the synthesizer's device; the network synthesises the whole batch at once, each
result equal to the sentence run alone (``harmonyspeech.models.melo``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

from harmonyspeech.audio import Audio
from harmonyspeech.config import MeloTTSModelConfig
from harmonyspeech.errors import HarmonySpeechError, InvalidRequestError, ModelLoadError, quoted
from harmonyspeech.models.allocator import retain_freed_memory
from harmonyspeech.models.base import (
    ModelAdapter,
    resolve_num_threads,
    set_torch_threads,
    torch_device,
)
from harmonyspeech.models.melo.items import JA_BERT_CHANNELS
from harmonyspeech.models.types import SynthesisRequest

logger = logging.getLogger(__name__)

FRONTEND_WARM_UP = "Warm-up at 10:30 for $2, Zyxthorpia."
"""Text run through the frontend at load: a number, a time, money and an out-of-vocabulary word."""


class _Prepared(NamedTuple):
    """One piece of an item after the frontend: model ids, the frontend's output (for BERT),
    speaker row and seed (the item's, or one derived per piece when it was cut)."""

    sequence: Any
    frontend: Any
    speaker: int
    seed: int | None


class MeloTTSAdapter(ModelAdapter[SynthesisRequest, Audio]):
    """Synthesises sentence items of many requests per forward pass."""

    config: MeloTTSModelConfig

    def __init__(self, config: MeloTTSModelConfig):
        super().__init__(config)
        self._synth: Any = None
        self._frontend: Any = None
        self._symbol_ids: dict[str, int] = {}
        self._bert: Any = None
        self._facts: dict[str, Any] = {}

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        from harmonyspeech.text import EnglishFrontend, frontend_language, symbol_table

        options = self.config.options
        try:
            frontend_language(options.language)
        except InvalidRequestError as exc:
            raise ModelLoadError(f"MeloTTS {options.language}: {exc.message}") from exc
        set_torch_threads(resolve_num_threads(self.config))
        if torch_device(self.config.device) == "cpu":
            retain_freed_memory()
        self._synth = self._load_synthesizer()
        tokenizer = self._load_bert()
        self._frontend = EnglishFrontend(
            tokenizer, self._synth.symbols, drop_unknown_tokens=options.drop_unknown_tokens
        )
        self._symbol_ids = symbol_table(self._synth.symbols)
        # Loads the number speller (inflect takes ~3 s to import), the CMU dictionary and the
        # neural G2P now rather than in the first request that needs them.
        self._frontend(FRONTEND_WARM_UP)
        unknown = {v: s for v, s in options.voices.items() if s not in self._synth.spk2id}
        if unknown:
            raise ModelLoadError(
                f"voices {unknown} name speakers this checkpoint lacks; it has "
                f"{', '.join(self._synth.spk2id)}"
            )

    def _load_synthesizer(self) -> Any:
        from harmonyspeech.models.melo import MELO_REPO_IDS, MeloSynthesizer
        from harmonyspeech.models.melo.checkpoint import CHECKPOINT_FILES
        from harmonyspeech.models.melo.fixtures import OFFICIAL_SPEAKERS
        from harmonyspeech.models.weights import WeightsNotFoundError, resolve_weights

        options = self.config.options
        device, dtype = torch_device(self.config.device), self.config.dtype
        try:
            path = resolve_weights(
                self.config.weights,
                CHECKPOINT_FILES,
                default_repo_id=MELO_REPO_IDS[options.language],
            )
        except WeightsNotFoundError as exc:
            if not self.config.weights.allow_random:
                raise
            logger.warning(
                "MODEL %r RUNS ON RANDOM WEIGHTS (MeloTTS %s network): its speech is noise (%s)",
                self.config.name,
                options.random_size,
                exc.message,
            )
            self._facts["random_weights"] = True
            speakers = OFFICIAL_SPEAKERS.get(options.language, {options.language: 0})
            return MeloSynthesizer.from_random_weights(
                size=options.random_size, speakers=speakers, device=device, dtype=dtype
            )
        self._facts.update(random_weights=False, checkpoint=str(path))
        return MeloSynthesizer.from_checkpoint_dir(
            path,
            device=device,
            dtype=dtype,
            decoder_batch_size=options.decoder_batch_size or "auto",
        )

    def _load_bert(self) -> Any:
        """Load the shared BERT and return the WordPiece tokenizer the frontend needs."""
        from harmonyspeech.models.bert import get_bert_extractor

        bert = self.config.options.bert
        try:
            extractor = get_bert_extractor(bert.source, device=torch_device(self.config.device))
        except ModelLoadError as exc:
            if not bert.allow_random:
                raise
            logger.warning(
                "MODEL %r RUNS WITHOUT BERT (zero features, generated vocabulary): %s",
                self.config.name,
                exc.message,
            )
            self._facts["bert"] = "unavailable: zero features"
            return _generated_tokenizer()
        if extractor.hidden_size != JA_BERT_CHANNELS:
            raise ModelLoadError(
                f"BERT {bert.source!r} has {extractor.hidden_size} channels; MeloTTS takes "
                f"{JA_BERT_CHANNELS}"
            )
        # A checkpoint trained without BERT (data.disable_bert) takes zeros, whatever the config.
        use_bert = bert.enabled and not self._synth.hparams.disable_bert
        self._bert = extractor if use_bert else None
        self._facts["bert"] = bert.source if use_bert else "disabled: zero features"
        return extractor.tokenizer

    def describe(self) -> dict[str, Any]:
        from harmonyspeech.models.melo.precision import decoder_dtype_name

        options = self.config.options
        return {
            **self._facts,
            "language": options.language,
            "sample_rate": self._synth.sample_rate,
            "decoder_dtype": decoder_dtype_name(self._synth.network.dec),
            "speakers": list(self._synth.spk2id),
            "voices": dict(options.voices),
        }

    # -- inference ---------------------------------------------------------------------------

    def cost(self, item: SynthesisRequest) -> float:
        # Characters / speed tracks phones, hence frames, before the frontend has run.
        return len(item.text) / item.speed

    def infer_batch(self, items: Sequence[SynthesisRequest]) -> list[Audio | Exception]:
        results: list[Any] = [self._prepare(item) for item in items]
        pieces = [
            (index, piece)
            for index, prepared in enumerate(results)
            if not isinstance(prepared, Exception)
            for piece in prepared
        ]
        features = self._features([piece for _, piece in pieces])
        synth_items = [
            self._synthesis_item(items[index], piece, feats)
            for (index, piece), feats in zip(pieces, features, strict=True)
        ]
        waveforms = self._synth.synthesize(synth_items) if synth_items else []
        per_item: dict[int, list[Any]] = {
            index: [] for index, prepared in enumerate(results) if isinstance(prepared, list)
        }
        for (index, _), wave in zip(pieces, waveforms, strict=True):
            per_item[index].append(wave)
        for index, waves in per_item.items():
            results[index] = Audio(self._joined(waves, items[index].speed), self._synth.sample_rate)
        return results

    def _prepare(self, item: SynthesisRequest) -> list[_Prepared] | Exception:
        """Frontend and speaker lookup for one item; a failure fails this item only.

        Usually one piece; text that normalisation spells out very long (huge numbers) is cut
        into several, synthesised in the same batch and joined like sentences.
        """
        from harmonyspeech.text import speaks, to_sequence
        from harmonyspeech.text.sentences import item_seed

        try:
            speaker = self.speaker_id(item.voice)
            # Nothing to speak (emoji alone, say) is no audio: the pause between sentences,
            # as for punctuation alone.
            outputs = [out for out in self._frontend.pieces(item.text) if speaks(out.phones)]
            if self._bert is not None and any(
                len(out.token_ids) > self._bert.max_tokens for out in outputs
            ):
                raise InvalidRequestError(
                    "a sentence is too long for the BERT; split it with punctuation",
                    param="input",
                )
        except HarmonySpeechError as exc:
            return exc
        options = self.config.options
        return [
            _Prepared(
                to_sequence(
                    out,
                    self._symbol_ids,
                    language=options.language,
                    add_blank=self._synth.hparams.add_blank,
                ),
                out,
                speaker,
                item.seed if len(outputs) == 1 else item_seed(item.seed, index),
            )
            for index, out in enumerate(outputs)
        ]

    def _joined(self, waves: list[Any], speed: float) -> Any:
        """Pieces of one item in order, with the sentence gap between them."""
        import numpy as np

        from harmonyspeech.text.sentences import gap_samples

        if len(waves) <= 1:
            return waves[0] if waves else np.zeros(0, dtype=np.float32)
        gap = np.zeros(gap_samples(self._synth.sample_rate, speed), dtype=np.float32)
        parts = [part for wave in waves for part in (wave, gap)][:-1]
        return np.concatenate(parts)

    def _features(self, prepared: list[_Prepared]) -> list[Any]:
        if self._bert is None:
            return [None] * len(prepared)
        # word2ph after blank interspersing, so there is one feature column per model token.
        pairs = [(p.frontend.token_ids, p.sequence.word2ph) for p in prepared]
        return self._bert.extract_batch(pairs)

    def _synthesis_item(self, item: SynthesisRequest, prepared: _Prepared, ja_bert: Any) -> Any:
        import numpy as np

        from harmonyspeech.models.melo import SynthesisItem

        options = self.config.options
        return SynthesisItem(
            phones=np.asarray(prepared.sequence.phone_ids, dtype=np.int64),
            tones=np.asarray(prepared.sequence.tone_ids, dtype=np.int64),
            languages=np.asarray(prepared.sequence.language_ids, dtype=np.int64),
            speaker_id=prepared.speaker,
            ja_bert=ja_bert,
            sdp_ratio=_or(item.sdp_ratio, options.sdp_ratio),
            noise_scale=_or(item.noise_scale, options.noise_scale),
            noise_scale_w=_or(item.noise_scale_w, options.noise_scale_w),
            length_scale=1.0 / item.speed,
            seed=prepared.seed,
        )

    def speaker_id(self, voice: str) -> int:
        """Row of the speaker table for a speaker name or configured voice alias.

        Raises:
            InvalidRequestError: Unknown voice (param ``voice``), listing the known ones.
        """
        speakers = self._synth.spk2id
        return int(speakers[speaker_of(voice, speakers, self.config.options.voices)])


def speaker_of(voice: str, speakers: Collection[str], aliases: Mapping[str, str]) -> str:
    """The speaker a voice names: a speaker itself, or a configured alias of one.

    Raises:
        InvalidRequestError: Unknown voice (param ``voice``), listing the known ones.
    """
    name = aliases.get(voice, voice)
    if name in speakers:
        return name
    known = [*speakers, *aliases]
    raise InvalidRequestError(
        f"unknown voice {quoted(voice)}; available: {', '.join(known)}", param="voice"
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _generated_tokenizer() -> Any:
    """A WordPiece tokenizer over a generated vocabulary (demo mode without the real BERT).

    Phones and tones do not depend on how words split into pieces, only word2ph does, and it is
    only used to spread BERT features, which are zeros here.
    """
    import tempfile
    from pathlib import Path

    from harmonyspeech.models.bert_fixtures import write_vocab
    from harmonyspeech.text import WordPieceTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return WordPieceTokenizer.from_vocab(write_vocab(Path(tmp) / "vocab.txt"))
