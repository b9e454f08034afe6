"""The engine as the API sees it: config, pipeline catalog, runner and model clients.

The same ``EngineRuntime`` serves HTTP inside the Ray Serve ingress (clients over deployment
handles) and in-process (clients over local workers: tests, batch jobs, benchmarks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from harmonyspeech.config import EngineConfig
from harmonyspeech.engine.client import LocalModelClient, ModelClient
from harmonyspeech.engine.items import Priority
from harmonyspeech.engine.worker import ModelWorker
from harmonyspeech.models.melotts import speaker_of
from harmonyspeech.models.process_env import apply_model_env_defaults
from harmonyspeech.models.registry import create_adapter
from harmonyspeech.models.types import SynthesisRequest
from harmonyspeech.pipelines.cloning import use_cloned_voice
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.runner import PipelineRunner
from harmonyspeech.pipelines.spec import PipelineCatalog, PipelineSpec, build_catalog
from harmonyspeech.pipelines.stages import stage_applies
from harmonyspeech.pipelines.voices import VoiceStore, is_voice_id

STATUS_TIMEOUT_S = 5.0
"""How long ``/ready`` (and a look at a model's facts) waits for a model instance's status
before calling it unreachable."""


class EngineRuntime:
    """Config, catalog and runner over one client per model instance."""

    def __init__(self, config: EngineConfig, clients: Mapping[str, ModelClient]):
        self.config = config
        self.catalog: PipelineCatalog = build_catalog(config)
        self.clients = dict(clients)
        self.runner = PipelineRunner(self.clients)
        self.voices = VoiceStore(config.server.voices.path)
        self._facts: dict[str, dict[str, Any]] = {}

    async def speech_context(
        self,
        pipeline: PipelineSpec,
        speech: SynthesisRequest,
        *,
        timeout_s: float | None,
        priority: Priority = Priority.INTERACTIVE,
        streamed: bool = True,
    ) -> PipelineContext:
        """The context of a speech request; a cloned voice's id (``voice_...``) is looked up
        in the registry and its embedding read now, once for the whole request.

        Raises:
            NotFoundError: No such cloned voice (404).
            InvalidRequestError: ``pipeline`` cannot speak cloned voices, or not this one
                (another converter made it).
        """
        ctx = PipelineContext.with_timeout(
            timeout_s, speech=speech, priority=priority, streamed=streamed
        )
        if is_voice_id(speech.voice):
            stored = await asyncio.to_thread(self.voices.get, speech.voice)
            use_cloned_voice(
                pipeline, ctx, stored.embedding, self.catalog, made_by=stored.record.model
            )
        else:
            await self._check_builtin_voice(pipeline, speech.voice)
        return ctx

    async def _check_builtin_voice(self, pipeline: PipelineSpec, voice: str) -> None:
        """Refuse a voice the pipeline's synthesizer lacks now (400), before a full queue can
        refuse the request as overload (a 503, which clients retry in vain). The synthesizer
        checks it again; until it has loaded, only it does."""
        stage = pipeline.stage("synthesize")
        facts = await self.model_facts(stage.model) if stage is not None else {}
        if "speakers" not in facts:
            return
        speaker_of(voice, facts["speakers"], facts.get("voices", {}))

    async def model_facts(self, name: str) -> dict[str, Any]:
        """What a loaded model says about itself (``ModelAdapter.describe``): speakers, sample
        rate, random weights, ... Empty until the model is ready (or while it does not answer
        within ``STATUS_TIMEOUT_S``: a deployment without a replica holds status calls until it
        has one); cached once it is."""
        if name not in self._facts:
            try:
                status = await asyncio.wait_for(self.clients[name].status(), STATUS_TIMEOUT_S)
            except TimeoutError:
                return {}
            if status.get("state") != "ready":
                return {}
            self._facts[name] = dict(status.get("info") or {})
        return self._facts[name]

    async def random_weight_models(
        self, pipeline: PipelineSpec, ctx: PipelineContext | None = None
    ) -> list[str]:
        """Models of ``pipeline`` running on random weights (demo mode, decision 7); given the
        request's ``ctx``, only those its stages use (a built-in voice skips the converter)."""
        stages = [s for s in pipeline.stages if ctx is None or stage_applies(s.kind, ctx)]
        names = list(dict.fromkeys(stage.model for stage in stages))
        facts = await asyncio.gather(*(self.model_facts(name) for name in names))
        return [n for n, f in zip(names, facts, strict=True) if f.get("random_weights")]

    async def model_statuses(self) -> dict[str, dict[str, Any]]:
        """Status document of every model instance, by name."""
        names = list(self.clients)
        # Bounded: while a deployment has no replica (one died, its replacement is starting)
        # a status call would wait for one, and /ready must answer now.
        results = await asyncio.gather(
            *(asyncio.wait_for(self.clients[n].status(), STATUS_TIMEOUT_S) for n in names),
            return_exceptions=True,
        )
        return {
            name: result if isinstance(result, dict) else _unreachable(result)
            for name, result in zip(names, results, strict=True)
        }


def _unreachable(error: BaseException) -> dict[str, Any]:
    if isinstance(error, TimeoutError):
        reason = f"no answer within {STATUS_TIMEOUT_S:.0f} s"
    else:
        reason = f"{type(error).__name__}: {error}"
    return {"state": "unreachable", "error": reason}


class LocalEngine:
    """Every model of a config served by workers in this process.

    Use as a context manager, or call ``start``/``stop``.
    """

    def __init__(self, config: EngineConfig):
        # As a Serve model replica does, before any of this process's models loads.
        apply_model_env_defaults()
        self.config = config
        self.workers = {
            m.name: ModelWorker(create_adapter(m), m.batching, name=m.name) for m in config.models
        }
        self.runtime = EngineRuntime(
            config, {name: LocalModelClient(w) for name, w in self.workers.items()}
        )

    def start(self, *, wait: bool = True, timeout: float | None = 300) -> LocalEngine:
        for worker in self.workers.values():
            worker.start()
        if wait:
            for worker in self.workers.values():
                worker.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
