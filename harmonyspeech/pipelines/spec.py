"""Pipelines as data: validated specs built from the config.

A pipeline is an ordered list of stages; each stage names a kind (the task it performs) and the
model instance that runs it. ``build_catalog`` checks every stage against the model registry, so
``check-config`` reports a stage whose model cannot perform its task, with the stage's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harmonyspeech.config import EngineConfig
from harmonyspeech.errors import ConfigError, NotFoundError
from harmonyspeech.models.registry import FAMILIES


@dataclass(frozen=True)
class StageSpec:
    """One validated stage."""

    kind: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    """One validated pipeline."""

    name: str
    aliases: tuple[str, ...]
    description: str
    stages: tuple[StageSpec, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(stage.kind for stage in self.stages)

    def stage(self, kind: str) -> StageSpec | None:
        """The first stage of ``kind``, if the pipeline has one."""
        return next((s for s in self.stages if s.kind == kind), None)


class PipelineCatalog:
    """All pipelines of an engine, addressable by name or alias."""

    def __init__(self, pipelines: Iterable[PipelineSpec]):
        self._pipelines = list(pipelines)
        self._by_name: dict[str, PipelineSpec] = {}
        for pipeline in self._pipelines:
            for name in (pipeline.name, *pipeline.aliases):
                self._by_name.setdefault(name, pipeline)

    def __iter__(self) -> Iterator[PipelineSpec]:
        return iter(self._pipelines)

    def resolve(self, name: str, *, requires: str | None = None) -> PipelineSpec:
        """The pipeline called ``name`` (or aliased so).

        Args:
            name: Pipeline name or alias, as sent in the request's ``model`` field.
            requires: A stage kind the pipeline must contain, e.g. ``"vad"`` for the VAD
                endpoint, so a request cannot run a pipeline of the wrong kind.

        Raises:
            NotFoundError: No such pipeline, or it lacks the required stage (param ``model``).
        """
        pipeline = self._by_name.get(name)
        if pipeline is None:
            raise NotFoundError(
                f"model {name!r} does not exist; available: {', '.join(self.names(requires))}",
                param="model",
                code="model_not_found",
            )
        if requires is not None and pipeline.stage(requires) is None:
            raise NotFoundError(
                f"model {name!r} cannot serve this endpoint (it has no {requires!r} stage); "
                f"available: {', '.join(self.names(requires))}",
                param="model",
                code="model_not_found",
            )
        return pipeline

    def names(self, requires: str | None = None) -> list[str]:
        """Pipeline names (and aliases), optionally only those with a ``requires`` stage."""
        return [
            name
            for name, pipeline in self._by_name.items()
            if requires is None or pipeline.stage(requires) is not None
        ]

    def default_for(self, kind: str) -> PipelineSpec | None:
        """The first pipeline whose first stage is ``kind``."""
        return next((p for p in self._pipelines if p.stages[0].kind == kind), None)


def build_catalog(config: EngineConfig) -> PipelineCatalog:
    """Validate every pipeline against the model registry.

    Raises:
        ConfigError: A stage kind no model family performs, or a model that cannot perform it.
    """
    problems = list(_stage_problems(config))
    if problems:
        raise ConfigError(problems)
    return PipelineCatalog(
        PipelineSpec(
            name=p.name,
            aliases=tuple(p.aliases),
            description=p.description,
            stages=tuple(StageSpec(s.kind, s.model, dict(s.options)) for s in p.stages),
        )
        for p in config.pipelines
    )


def _stage_problems(config: EngineConfig) -> Iterator[tuple[str, str]]:
    known_kinds = sorted({kind for info in FAMILIES.values() for kind in info.tasks})
    families = {m.name: m.family for m in config.models}
    for i, pipeline in enumerate(config.pipelines):
        for j, stage in enumerate(pipeline.stages):
            path = f"pipelines[{i}].stages[{j}]"
            if stage.kind not in known_kinds:
                yield f"{path}.kind", f"unknown stage kind {stage.kind!r}; known: {known_kinds}"
                continue
            family = families.get(stage.model)
            if family is not None and stage.kind not in FAMILIES[family].tasks:
                yield (
                    f"{path}.model",
                    f"model {stage.model!r} (family {family}) cannot run a {stage.kind!r} stage",
                )
