"""Typed engine configuration.

One YAML file describes the whole engine: the HTTP server, every model instance (family, weights,
device, batching policy, Ray deployment options) and the named pipelines that chain them.
``load_config`` is the only function that reads configuration files. Every problem is reported with
its path inside the file, e.g. ``models[2].batching.max_batch_size: must be >= 1``.

Every model is strict: unknown keys are rejected, and every field carries a docstring that becomes
its description (``use_attribute_docstrings``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from harmonyspeech.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
KEY_HASH_PATTERN = r"sha256:[0-9a-f]{64}"
"""The stored form of an API key."""
KEY_LABEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
"""A key's label (keys file, ``rate_limits.overrides``): no spaces, no colons."""


class StrictModel(BaseModel):
    """Base for every config section: frozen, unknown keys rejected, docstrings as descriptions."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        protected_namespaces=(),
    )


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class BatchingPolicy(StrictModel):
    """How the scheduler of one model instance forms batches and bounds its queue."""

    max_batch_size: int = Field(16, ge=1)
    """Most work items in one forward pass."""

    max_batch_cost: float | None = Field(None, gt=0)
    """Budget for a batch's padded cost (items × the costliest item, in the adapter's cost unit,
    e.g. audio seconds for VAD). A single item over budget still runs alone. None: no budget."""

    max_wait_ms: float = Field(5.0, ge=0)
    """How long the oldest queued item may wait for a batch to fill before the batch is sent."""

    max_queue: int = Field(256, ge=1)
    """Most items waiting in the queue; past it, new requests fail fast with HTTP 503 +
    Retry-After. Work of a request whose first output is out is queued past it (it still
    counts), so that a stream under way is not cut off."""

    lookahead: int = Field(4, ge=1)
    """How many batches' worth of queued items (in urgency order) are considered when grouping
    items of similar length. Bounds how far an item can be overtaken."""

    refuse_late_work: bool = True
    """Refuse new work (HTTP 503 + Retry-After, at once) that would miss its deadline behind
    the work already queued, by the time this model has taken per unit of cost in its recent
    batches; otherwise such work waits its whole deadline for a 504. Work of a request whose
    first output is out is never refused."""


class AutoscalingOptions(StrictModel):
    """Ray Serve autoscaling for one deployment: replicas follow the requests in flight."""

    min_replicas: int = Field(1, ge=0)
    """Fewest replicas; 0 lets an idle model scale away (its next request waits for a load)."""

    max_replicas: int = Field(ge=1)
    """Most replicas."""

    target_ongoing_requests: float = Field(64.0, gt=0)
    """Requests in flight per replica that autoscaling aims for. For a batching model keep it at
    a few batches' worth: replicas split the traffic, and so their batches."""

    upscale_delay_s: float = Field(30.0, ge=0)
    """How long demand must stay above target before replicas are added."""

    downscale_delay_s: float = Field(600.0, ge=0)
    """How long demand must stay below target before replicas are removed (model loads are
    expensive, so scale down slowly)."""

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class DeploymentOptions(StrictModel):
    """Ray Serve options for one deployment."""

    replicas: int = Field(1, ge=1)
    """Number of replicas (fixed); ignored, and must be left out, when ``autoscaling`` is set."""

    autoscaling: AutoscalingOptions | None = None
    """Scale the replicas between bounds instead of a fixed ``replicas`` count."""

    num_cpus: float = Field(1.0, ge=0)
    """CPUs reserved per replica (fractions allowed)."""

    num_gpus: float = Field(0.0, ge=0)
    """GPUs reserved per replica; fractions let several model types share one GPU."""

    max_ongoing_requests: int = Field(256, ge=1)
    """Requests a replica accepts concurrently. Must be well above the batch size: Ray's default
    of 5 starves batching."""

    max_queued_requests: int | None = Field(None, ge=1)
    """Requests that may wait to be assigned a replica; past it Serve refuses at once with 503
    and ``Retry-After: 1`` (which clients retry) instead of queueing without bound. Serve counts
    every request not yet assigned, also while replicas have free ``max_ongoing_requests``
    slots, so keep it above the largest burst of simultaneous arrivals. None: no bound."""

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> DeploymentOptions:
        if self.autoscaling is not None and "replicas" in self.model_fields_set:
            raise ValueError("set either replicas or autoscaling, not both")
        return self


class IngressOptions(DeploymentOptions):
    """Ray Serve options for the HTTP ingress: a light replica that holds many open requests
    (streams), and a bounded line of requests waiting for one. Each field keeps its default
    when a config sets only others."""

    num_cpus: float = Field(0.5, ge=0)
    """CPUs reserved per ingress replica (fractions allowed)."""

    max_ongoing_requests: int = Field(1024, ge=1)
    """Requests (open streams included) an ingress replica handles concurrently."""

    max_queued_requests: int | None = Field(1024, ge=1)
    """Requests that may wait for an ingress replica; past it Serve's proxy answers 503 with
    ``Retry-After: 1`` at once. Keep it above the largest burst of simultaneous arrivals.
    None: no bound."""


class WeightsSource(StrictModel):
    """Where a model's weights come from. Resolution order: ``path``, then the local Hugging Face
    cache, then a hub download of ``repo_id``."""

    path: str | None = None
    """Explicit local file or directory."""

    repo_id: str | None = None
    """Hugging Face repository id."""

    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""

    allow_random: bool = False
    """When no weights can be found, start on randomly initialised weights of the real
    architecture (demo mode, announced loudly). Production configs leave this off."""


Device = Annotated[str, Field(pattern=r"^(cpu|auto|cuda(:\d+)?)$")]
DType = Literal["float32", "bfloat16", "float16", "auto"]


class ModelConfigBase(StrictModel):
    """Fields shared by every model instance, whatever its family."""

    name: str = Field(pattern=NAME_PATTERN)
    """Unique instance name; pipeline stages refer to models by it."""

    weights: WeightsSource = WeightsSource()
    """Where the weights come from (families with bundled weights ignore it)."""

    device: Device = "cpu"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""

    num_threads: int | None = Field(None, ge=1)
    """Intra-op threads for this model's runtime; None: one per reserved CPU (at least 1)."""

    batching: BatchingPolicy = BatchingPolicy()
    """Scheduler policy for this model instance."""

    deployment: DeploymentOptions = DeploymentOptions()
    """Ray Serve deployment options for this model instance."""


class SileroVadOptions(StrictModel):
    """Default VAD parameters; requests may override each of them."""

    threshold: float = Field(0.5, gt=0, lt=1)
    """Speech probability above which a frame is speech."""

    neg_threshold: float | None = Field(None, gt=0, lt=1)
    """Probability below which speech ends; None: ``threshold - 0.15``."""

    min_speech_duration_ms: int = Field(250, ge=0)
    """Speech segments shorter than this are dropped."""

    min_silence_duration_ms: int = Field(100, ge=0)
    """Silence needed before a speech segment ends."""

    speech_pad_ms: int = Field(30, ge=0)
    """Padding added to both sides of each segment."""

    max_speech_duration_s: float | None = Field(None, gt=0)
    """Longer segments are split (at the longest silence when possible); None: no limit."""

    sampling_rate: Literal[8000, 16000] = 16000
    """Rate the model runs at; uploads are resampled to it."""

    @model_validator(mode="after")
    def _check_thresholds(self) -> SileroVadOptions:
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError("neg_threshold must not be above threshold")
        return self


class SileroVadModelConfig(ModelConfigBase):
    """Silero VAD, using the weights bundled in the ``silero-vad`` package."""

    family: Literal["silero-vad"]
    """Model family."""

    options: SileroVadOptions = SileroVadOptions()
    """Default detection parameters."""


class FasterWhisperOptions(StrictModel):
    """faster-whisper (CTranslate2) settings."""

    model: str = "tiny"
    """Size name (``tiny``, ``base``, ``small``, ``large-v3``, ...) or Hugging Face id of a
    CTranslate2 conversion; ``weights.path`` (a local CTranslate2 directory) takes precedence."""

    compute_type: str = "default"
    """CTranslate2 compute type (``int8``, ``float32``, ``float16``, ``int8_float16``, ...);
    ``default`` keeps the model's own."""

    beam_size: int = Field(5, ge=1, le=16)
    """Beam width; 1 is greedy decoding."""

    max_new_tokens: int | None = Field(None, ge=1, le=440)
    """Most tokens decoded per 30 s window; None: up to the model's limit."""

    suppress_tokens: list[int] = Field(default_factory=lambda: [-1])
    """Token ids never generated, as faster-whisper's option; ``-1`` stands for Whisper's
    default set of non-speech symbols."""

    random_size: Literal["toy", "tiny", "base"] = "tiny"
    """Dimensions of the random model built when no weights exist and ``weights.allow_random``
    is set."""


class FasterWhisperModelConfig(ModelConfigBase):
    """Speech recognition and translation with faster-whisper, batched across requests."""

    family: Literal["faster-whisper"]
    """Model family."""

    options: FasterWhisperOptions = FasterWhisperOptions()
    """Recognition settings."""


class MeloBertOptions(StrictModel):
    """The BERT whose features condition MeloTTS (one per process, shared by every voice)."""

    enabled: bool = True
    """Off: zero features (faster, flatter prosody), as the sherpa-onnx exports do."""

    source: str = "bert-base-uncased"
    """Local directory or Hugging Face id of the BERT and its WordPiece tokenizer."""

    allow_random: bool = False
    """When the BERT cannot be found, run with zero features and a generated vocabulary
    (demo mode, announced loudly) instead of failing to load."""


MeloLanguage = Literal["EN", "EN_V2", "EN_NEWEST", "FR", "JP", "ES", "ZH", "KR"]


class MeloTTSOptions(StrictModel):
    """MeloTTS synthesis settings."""

    language: MeloLanguage = "EN"
    """Upstream language key; picks the text frontend and the default hub repository."""

    voices: dict[str, str] = Field(default_factory=dict)
    """Extra voice names (e.g. OpenAI's ``alloy``) mapped to the checkpoint's speaker names."""

    sdp_ratio: float = Field(0.2, ge=0, le=1)
    """Default mix of the stochastic duration predictor (upstream ``tts_to_file`` default)."""

    noise_scale: float = Field(0.6, ge=0, le=2)
    """Default prior noise scale."""

    noise_scale_w: float = Field(0.8, ge=0, le=2)
    """Default duration noise scale."""

    bert: MeloBertOptions = MeloBertOptions()
    """BERT feature settings."""

    drop_unknown_tokens: bool = True
    """Stay silent on tokens the BERT vocabulary lacks (emoji, rare symbols); upstream reads
    them as the letters "unk"."""

    decoder_batch_size: int | None = Field(None, ge=1)
    """Most items the per-frame half (flow and decoder) runs at once; None: the synthesizer's
    measured default (one at a time on CPU, groups of 64 similar lengths on GPU). Results never
    depend on it."""

    random_size: Literal["tiny", "real"] = "real"
    """Network size built when no checkpoint exists and ``weights.allow_random`` is set."""


class DecoderModelConfigBase(ModelConfigBase):
    """Fields of the families whose cost is mostly a HiFi-GAN decoder (MeloTTS, OpenVoice)."""

    dtype: DType = "float32"
    """Decoder precision (everything that decides an item's length stays float32); ``auto``:
    the fastest that keeps batches exact on the device, a bfloat16 decoder on CPUs with native
    bf16 (AVX512-BF16 or AMX), float32 elsewhere. ``float16`` is for GPUs: a CPU without native
    float16 (AMX-FP16) emulates it about 20x slower than float32, so the model refuses to load."""


class MeloTTSModelConfig(DecoderModelConfigBase):
    """MeloTTS text-to-speech on our own batched runtime (official checkpoints)."""

    family: Literal["melotts"]
    """Model family."""

    options: MeloTTSOptions = MeloTTSOptions()
    """Synthesis settings."""


class OpenVoiceOptions(StrictModel):
    """OpenVoice V2 tone-colour converter settings."""

    tau: float = Field(0.3, gt=0, le=1)
    """Posterior noise scale of conversion (upstream's default)."""

    min_speech_s: float = Field(5.0, gt=0)
    """Least speech a cloning reference must hold (after silence is cut away)."""

    piece_s: float = Field(10.0, gt=0)
    """Reference speech is cut into about this long pieces, each embedded, then averaged (as
    upstream's ``get_se``)."""

    base_speakers: list[str] = Field(
        default_factory=lambda: ["EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default"]
    )
    """MeloTTS speakers whose tone colour is loaded (``base_speakers/ses/<speaker>.pth``):
    the voices that synthesised speech can be converted from."""

    random_size: Literal["tiny", "real"] = "real"
    """Network size built when no checkpoint exists and ``weights.allow_random`` is set."""


class OpenVoiceModelConfig(DecoderModelConfigBase):
    """OpenVoice V2 tone-colour embeddings and conversion (official converter checkpoint)."""

    family: Literal["openvoice"]
    """Model family."""

    options: OpenVoiceOptions = OpenVoiceOptions()
    """Conversion settings."""


ModelConfig = Annotated[
    SileroVadModelConfig | FasterWhisperModelConfig | MeloTTSModelConfig | OpenVoiceModelConfig,
    Field(discriminator="family"),
]
MODEL_FAMILIES: tuple[str, ...] = ("silero-vad", "faster-whisper", "melotts", "openvoice")


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


class StageConfig(StrictModel):
    """One step of a pipeline."""

    kind: str
    """What the stage does (``vad``, ...); must be a task the named model's family performs."""

    model: str
    """Name of the model instance that runs this stage."""

    options: dict[str, Any] = Field(default_factory=dict)
    """Stage-specific options, validated by the stage itself."""


class PipelineConfig(StrictModel):
    """A named chain of stages; clients select it with the request's ``model`` field."""

    name: str = Field(pattern=NAME_PATTERN)
    """Unique pipeline name."""

    aliases: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)
    """Other names clients may use for this pipeline (e.g. OpenAI's ``tts-1``)."""

    description: str = ""
    """Shown in ``/v1/models``."""

    stages: list[StageConfig] = Field(min_length=1)
    """Stages in execution order."""


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


SPEECH_CHARACTERS_PER_SECOND = 10.0
"""Characters of text per second of speech at speed 1, on the slow side (English speech runs at
about 14), so that the estimate rather overrates how much audio a text makes."""


class LimitsConfig(StrictModel):
    """Limits applied to every request."""

    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1)
    """Largest request body accepted (HTTP 413 beyond it)."""

    max_audio_seconds: float = Field(3600.0, gt=0)
    """Longest decoded upload accepted (HTTP 413 beyond it). An hour covers what OpenAI's 25 MB
    holds at speech bitrates (a 128 kbit/s MP3 is 27 minutes)."""

    request_timeout_s: float = Field(120.0, gt=0)
    """Deadline for a request's model work (HTTP 504 beyond it)."""

    timeout_per_audio_s: float = Field(0.5, ge=0)
    """Seconds added to ``request_timeout_s`` per second of audio a request brings or asks for,
    whose work grows with it: uploads (transcriptions, VAD, voice enrollment; a 30-minute
    recording has 120 + 900 s) and speech (its expected length, from its text and speed)."""

    def audio_timeout_s(self, audio_seconds: float) -> float:
        """Deadline for the model work on ``audio_seconds`` of uploaded audio."""
        return self.request_timeout_s + self.timeout_per_audio_s * audio_seconds

    def speech_timeout_s(self, characters: int, speed: float) -> float:
        """Deadline for synthesising ``characters`` of text at ``speed``: as for uploads, with
        the audio it will make estimated from its length (4096 characters at speed 1 have
        120 + 205 s; at a quarter speed, 120 + 819 s)."""
        expected_s = characters / (SPEECH_CHARACTERS_PER_SECOND * speed)
        return self.audio_timeout_s(expected_s)

    max_input_chars: int = Field(4096, ge=1)
    """Longest text accepted by ``/v1/audio/speech`` (HTTP 400 beyond it), as OpenAI."""


class AuthConfig(StrictModel):
    """API-key authentication for ``/v1/*``."""

    api_key_hashes: list[str] = Field(default_factory=list)
    """Accepted keys as ``sha256:<hex digest>`` (never plaintext in files)."""

    api_keys_env: str = "HARMONYSPEECH_API_KEYS"
    """Environment variable holding extra comma-separated plaintext keys, hashed at start-up."""

    api_keys_file: str | None = None
    """File of key hashes, one ``sha256:<hex> [label]`` per line (``#`` comments and blank lines
    allowed; plaintext keys refused; ``harmonyspeech hash-key`` writes the lines). Read once
    where the app is built, so replicas on other nodes need no copy. Missing file: start-up
    fails."""

    api_key_labels: dict[str, str] = Field(default_factory=dict)
    """Names of keys, by hash, shown in logs and usable in ``rate_limits.overrides``; the keys
    file's labels are added here at start-up."""

    allow_insecure_no_auth: bool = False
    """Permit serving on a non-loopback address without keys (otherwise start-up refuses)."""

    @field_validator("api_key_hashes")
    @classmethod
    def _check_hashes(cls, value: list[str]) -> list[str]:
        for digest in value:
            if not re.fullmatch(KEY_HASH_PATTERN, digest):
                raise ValueError("each entry must look like 'sha256:<64 lowercase hex digits>'")
        return value

    @field_validator("api_key_labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for digest, label in value.items():
            if not re.fullmatch(KEY_HASH_PATTERN, digest):
                # Not echoed: a misplaced plaintext key must not reach logs.
                raise ValueError("keys must be 'sha256:<64 lowercase hex digits>' hashes")
            if not re.fullmatch(KEY_LABEL_PATTERN, label):
                raise ValueError(f"label {label!r} must match {KEY_LABEL_PATTERN}")
        return value


class RateLimitOverride(StrictModel):
    """Limits of one API key. A field left out keeps the default; ``null`` lifts that limit."""

    requests_per_minute: int | None = Field(None, ge=1)
    """Requests per minute for this key."""

    audio_seconds_per_minute: float | None = Field(None, gt=0)
    """Audio seconds per minute for this key."""


class RateLimitsConfig(StrictModel):
    """Per-key rate limits on ``/v1/*`` (token buckets that refill continuously).

    Each request takes one request token; audio seconds (decoded uploads, synthesised speech)
    are charged as they become known and may drive the balance below zero, which refuses the
    key's next requests until it refills. Refusals are HTTP 429 with ``Retry-After``. A client
    is its API key (by hash); without keys configured, its address.
    """

    requests_per_minute: int | None = Field(None, ge=1)
    """Requests per minute for each key (the bucket's capacity, so also the largest burst);
    None: unlimited."""

    audio_seconds_per_minute: float | None = Field(None, gt=0)
    """Audio seconds per minute for each key, uploads and synthesised speech alike; None:
    unlimited."""

    overrides: dict[str, RateLimitOverride] = Field(default_factory=dict)
    """Limits of particular keys, by ``sha256:<hex>`` hash or by label (keys file,
    ``auth.api_key_labels``); an unknown label fails start-up."""

    backend: Literal["memory", "redis"] = "memory"
    """Where the buckets live: ``memory`` (this process; one ingress replica only) or
    ``redis`` (shared by every ingress replica)."""

    redis_url: str | None = None
    """Redis to keep the buckets in (``redis://host:6379/0``, ``rediss://`` for TLS); with
    ``backend: redis``, this or ``redis_url_env`` is required."""

    redis_url_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of an environment variable holding the Redis URL instead, so a password stays out
    of the config file and of the deployment's arguments; read by each ingress replica when it
    starts, so it must be set where they run (``harmonyspeech serve``'s environment, which its
    embedded Ray inherits, or each cluster node's ``ray start``)."""

    redis_prefix: str = Field("harmonyspeech:ratelimit", min_length=1)
    """Namespace of the bucket keys in Redis; idle buckets expire by themselves."""

    redis_timeout_s: float = Field(0.5, gt=0)
    """Connect and command timeout for Redis; past it the backend counts as unreachable."""

    on_backend_error: Literal["reject", "allow"] = "reject"
    """When Redis is unreachable: ``reject`` answers HTTP 503 with ``Retry-After`` (no
    unmetered traffic), ``allow`` lets requests through unmetered and logs a warning."""

    @property
    def enabled(self) -> bool:
        """Whether any limit is set at all (otherwise no limiter runs)."""
        limits = [self.requests_per_minute, self.audio_seconds_per_minute]
        for override in self.overrides.values():
            limits += [override.requests_per_minute, override.audio_seconds_per_minute]
        return any(limit is not None for limit in limits)

    @field_validator("overrides")
    @classmethod
    def _check_override_keys(
        cls, value: dict[str, RateLimitOverride]
    ) -> dict[str, RateLimitOverride]:
        for key in value:
            if not (re.fullmatch(KEY_HASH_PATTERN, key) or re.fullmatch(KEY_LABEL_PATTERN, key)):
                raise ValueError(
                    "each key must be a 'sha256:<64 lowercase hex>' hash or a key label"
                )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
        return value

    def override_problems(self, auth: AuthConfig, *, keys_known: bool) -> list[tuple[str, str]]:
        """Overrides that name no key of ``auth``: by label, and by hash too once
        ``keys_known`` (the environment's keys folded in; they have no labels)."""
        labels = set(auth.api_key_labels.values())
        problems = []
        for name in self.overrides:
            if not re.fullmatch(KEY_HASH_PATTERN, name):
                if name not in labels:
                    problems.append((name, "no API key has this label"))
            elif keys_known and name not in auth.api_key_hashes:
                problems.append((name, "no configured API key has this hash"))
        return [(f"server.rate_limits.overrides.{n}", message) for n, message in problems]

    @model_validator(mode="after")
    def _redis_needs_url(self) -> RateLimitsConfig:
        if self.backend == "redis" and not (self.redis_url or self.redis_url_env):
            raise ValueError("backend 'redis' needs redis_url or redis_url_env")
        if self.redis_url and self.redis_url_env:
            raise ValueError("set redis_url or redis_url_env, not both")
        return self

    def resolved_redis_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The Redis URL: ``redis_url``, or the value of the variable ``redis_url_env`` names.

        Raises:
            ConfigError: That variable is unset or empty.
        """
        if self.redis_url:
            return self.redis_url
        assert self.redis_url_env is not None  # the validator requires one of the two
        url = (os.environ if environ is None else environ).get(self.redis_url_env, "")
        if not url:
            problem = f"environment variable {self.redis_url_env} is not set"
            raise ConfigError([("server.rate_limits.redis_url_env", problem)])
        return url


class RayConfig(StrictModel):
    """How ``harmonyspeech serve`` reaches Ray."""

    address: str | None = None
    """Existing cluster to join (e.g. ``auto``); None: start an embedded local Ray."""

    num_cpus: int | None = Field(None, ge=1)
    """Logical CPUs for the embedded Ray; None: Ray's own count."""

    runtime_env: dict[str, Any] = Field(default_factory=dict)
    """Ray runtime environment of the application (``env_vars``, ``pip``, a remote
    ``working_dir``, ...): passed to ``ray.init`` when joining a cluster and written into the
    Serve config by ``harmonyspeech build-serve-config``."""

    metrics_export_port: int | None = Field(8080, ge=1, le=65535)
    """Port of the embedded Ray's metrics agent, which serves every ``ray_harmonyspeech_*``
    and ``ray_serve_*`` metric at ``/metrics`` (on all interfaces: Ray binds it to 0.0.0.0);
    None: a port Ray picks. Ignored when joining a cluster (``address``), whose nodes use the
    ``--metrics-export-port`` of their ``ray start``."""


class VoicesConfig(StrictModel):
    """Where cloned voices live."""

    path: str = "~/.local/share/harmonyspeech/voices"
    """Directory of the voice registry; on a cluster, a path every replica shares."""


ORIGIN_PATTERN = r"https?://[^/\s?#]+"


class CorsConfig(StrictModel):
    """Which web pages' scripts may call the API from a browser (CORS).

    Off by default: a browser then refuses a page's cross-origin calls, so that a site a user
    visits cannot use a server on their machine or network. Other clients are unaffected.
    """

    allow_origins: list[str] = []
    """Origins (``https://app.example.com``, with a port if not the scheme's) whose pages may
    call the API, or ``["*"]`` for any page. Requests still need an API key when ``auth``
    requires one."""

    max_age_s: int = Field(600, ge=0)
    """How long a browser may reuse a preflight's answer."""

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        if "*" in value and len(value) > 1:
            raise ValueError("'*' allows every origin: list it alone")
        for origin in value:
            if origin != "*" and not re.fullmatch(ORIGIN_PATTERN, origin):
                raise ValueError(f"{origin!r} is not an origin like 'https://app.example.com'")
        return value


class ServerConfig(StrictModel):
    """The HTTP front door."""

    host: str = "127.0.0.1"
    """Address to bind. A non-loopback address requires API keys (see ``auth``)."""

    port: int = Field(8000, ge=1, le=65535)
    """TCP port to bind."""

    limits: LimitsConfig = LimitsConfig()
    """Request limits."""

    auth: AuthConfig = AuthConfig()
    """API-key authentication."""

    rate_limits: RateLimitsConfig = RateLimitsConfig()
    """Per-key limits on requests and audio seconds per minute."""

    cors: CorsConfig = CorsConfig()
    """Browser access from other origins (off by default)."""

    ingress: IngressOptions = IngressOptions()
    """Ray Serve options for the HTTP ingress deployment."""

    ray: RayConfig = RayConfig()
    """Ray connection for ``harmonyspeech serve``."""

    shutdown_grace_s: float = Field(30.0, ge=0)
    """On SIGINT or SIGTERM, ``harmonyspeech serve`` refuses new requests (503) and lets those
    in flight finish for up to this long before it stops the models; a second signal stops
    at once. Clusters (``serve deploy``) follow Serve's own shutdown instead."""

    voices: VoicesConfig = VoicesConfig()
    """The cloned-voice registry."""

    @model_validator(mode="after")
    def _check_cross_fields(self) -> ServerConfig:
        # Only an embedded Ray takes the metrics port (a cluster's comes from `ray start`).
        if self.ray.address is None and self.ray.metrics_export_port == self.port:
            raise ValueError(f"ray.metrics_export_port must differ from port ({self.port})")
        if self.auth.api_keys_file is None:
            # Every label is known here (the keys file adds labels; the environment's keys
            # have none), so a label naming no key fails now rather than once Ray runs.
            problems = self.rate_limits.override_problems(self.auth, keys_known=False)
            if problems:
                raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))
        return self


class EngineConfig(StrictModel):
    """The whole engine."""

    server: ServerConfig = ServerConfig()
    """HTTP server settings."""

    models: list[ModelConfig] = Field(min_length=1)
    """Model instances; each becomes one scheduler and one Ray Serve deployment."""

    pipelines: list[PipelineConfig] = Field(min_length=1)
    """Named pipelines over the model instances."""

    def model(self, name: str) -> ModelConfig:
        """The model instance called ``name``."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Loading and reporting
# ---------------------------------------------------------------------------------------------


def load_config(source: str | Path | dict[str, Any]) -> EngineConfig:
    """Read, validate and cross-check a configuration.

    Args:
        source: Path to a YAML file, or an already parsed mapping.

    Raises:
        ConfigError: With every problem found and its path.
    """
    label = None
    if isinstance(source, dict):
        data = source
    else:
        label = str(source)
        data = _read_yaml(Path(source))
    try:
        config = EngineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc), source=label) from None
    problems = list(cross_check(config))
    if problems:
        raise ConfigError(problems, source=label)
    return config


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ("<file>", f"cannot read: {exc.strerror or exc}")
        raise ConfigError([problem], source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise ConfigError([(where, f"invalid YAML: {exc}")], source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([("<root>", "must be a mapping")], source=str(path))
    return data


def format_validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic errors into ``(path, message)`` pairs with readable messages."""
    return [(_format_loc(_error_loc(err)), _describe(err)) for err in exc.errors()]


def _error_loc(err: Any) -> tuple[int | str, ...]:
    loc = tuple(err["loc"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # The problem is the tag field itself, e.g. models[0].family.
        return (*loc, str(err["ctx"]["discriminator"]).strip("'"))
    return loc


def _format_loc(loc: Iterable[int | str]) -> str:
    path = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(previous, int) and part in MODEL_FAMILIES:
            # Discriminated unions insert the family tag into the location; it is not a key.
            pass
        else:
            path += f".{part}" if path else str(part)
        previous = part
    return path or "<root>"


_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "extra_forbidden": "unknown key",
    "missing": "required",
    "literal_error": "must be one of {expected}",
    "too_short": "must have at least {min_length} item(s)",
    "string_pattern_mismatch": "must match {pattern}",
    "union_tag_invalid": "unknown value {tag}; expected one of {expected_tags}",
    "union_tag_not_found": "required",
    "unexpected_keyword_argument": "unknown key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _describe(err: Any) -> str:
    template = _MESSAGES.get(err["type"])
    if template is None:
        return str(err["msg"]).removeprefix("Value error, ")
    try:
        return template.format(**err.get("ctx", {}))
    except (KeyError, IndexError):
        return str(err["msg"])


def cross_check(config: EngineConfig) -> Iterable[tuple[str, str]]:
    """Checks that span several sections: unique names, references, sizing rules."""
    yield from _duplicates("models", [m.name for m in config.models], "model name")
    yield from _duplicates("pipelines", [p.name for p in config.pipelines], "pipeline name")
    yield from _alias_clashes(config)
    known = [m.name for m in config.models]
    for i, pipeline in enumerate(config.pipelines):
        for j, stage in enumerate(pipeline.stages):
            if stage.model not in known:
                yield (
                    f"pipelines[{i}].stages[{j}].model",
                    f"unknown model {stage.model!r}; known: {', '.join(known)}",
                )
    yield from _rate_limit_backend(config.server)
    for i, model in enumerate(config.models):
        if model.deployment.num_gpus > 0 and model.device == "cpu":
            yield (
                f"models[{i}].deployment.num_gpus",
                "reserves a GPU for a model on device 'cpu'; set device to cuda or auto",
            )
        if model.deployment.max_ongoing_requests < model.batching.max_batch_size:
            yield (
                f"models[{i}].deployment.max_ongoing_requests",
                f"must be >= batching.max_batch_size ({model.batching.max_batch_size}), "
                "or batches can never fill",
            )


def _rate_limit_backend(server: ServerConfig) -> Iterable[tuple[str, str]]:
    limits, ingress = server.rate_limits, server.ingress
    if not limits.enabled or limits.backend != "memory":
        return
    scaling = ingress.autoscaling
    replicas = ingress.replicas if scaling is None else scaling.max_replicas
    if replicas > 1:
        yield (
            "server.rate_limits.backend",
            f"'memory' keeps the buckets in each ingress replica, and server.ingress runs up to "
            f"{replicas}: a key would get that many times its limit. Use backend 'redis' "
            "(redis_url) so every replica shares the buckets",
        )


def _duplicates(section: str, names: list[str], what: str) -> Iterable[tuple[str, str]]:
    counts = Counter(names)
    for i, name in enumerate(names):
        if counts[name] > 1:
            yield f"{section}[{i}].name", f"duplicate {what} {name!r}"


def _alias_clashes(config: EngineConfig) -> Iterable[tuple[str, str]]:
    owner: dict[str, str] = {p.name: p.name for p in config.pipelines}
    for i, pipeline in enumerate(config.pipelines):
        own = {pipeline.name}
        for j, alias in enumerate(pipeline.aliases):
            other = owner.get(alias)
            if alias in own:
                # /v1/models would list the same id twice.
                yield f"pipelines[{i}].aliases[{j}]", f"{alias!r} already names this pipeline"
            elif other is not None:
                yield (
                    f"pipelines[{i}].aliases[{j}]",
                    f"{alias!r} already names pipeline {other!r}",
                )
            own.add(alias)
            owner.setdefault(alias, pipeline.name)
