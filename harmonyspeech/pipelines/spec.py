"""Pipelines as data: validated specs built from the config.

A pipeline is an ordered list of stages; each stage names a kind (the task it performs) and the
model instance that runs it. ``build_catalog`` checks every stage against the model registry, so
``check-config`` reports a stage whose model cannot perform its task, with the stage's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from harmonyspeech.config import (
    EngineConfig,
    ModelConfig,
    ModelConfigBase,
    format_validation_errors,
    load_config,
)
from harmonyspeech.errors import ConfigError, NotFoundError, quoted
from harmonyspeech.models.registry import FAMILIES


@dataclass(frozen=True)
class StageSpec:
    """One validated stage, with the config of the model instance that runs it."""

    kind: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    model_config: ModelConfigBase | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """One validated pipeline."""

    name: str
    aliases: tuple[str, ...]
    description: str
    stages: tuple[StageSpec, ...]
    produces: str
    """What the pipeline returns: what its last stage produces."""

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

    def resolve(self, name: str, *, produces: str | None = None) -> PipelineSpec:
        """The pipeline called ``name`` (or aliased so).

        Args:
            name: Pipeline name or alias, as sent in the request's ``model`` field.
            produces: What the endpoint returns (``segments``, ``transcript``, ...); a pipeline
                that produces something else is refused, so a request cannot run a pipeline
                of the wrong kind.

        Raises:
            NotFoundError: No such pipeline, or it produces something else (param ``model``).
        """
        pipeline = self._by_name.get(name)
        if pipeline is None or (produces is not None and pipeline.produces != produces):
            reason = "does not exist" if pipeline is None else "cannot serve this endpoint"
            raise NotFoundError(
                f"model {quoted(name)} {reason}; available: {', '.join(self.names(produces))}",
                param="model",
                code="model_not_found",
            )
        return pipeline

    def names(self, produces: str | None = None) -> list[str]:
        """Pipeline names (and aliases), optionally only those producing ``produces``."""
        return [
            name
            for name, pipeline in self._by_name.items()
            if produces is None or pipeline.produces == produces
        ]

    def default_for(self, produces: str) -> PipelineSpec:
        """The first configured pipeline producing ``produces``.

        Raises:
            NotFoundError: None does.
        """
        for pipeline in self._pipelines:
            if pipeline.produces == produces:
                return pipeline
        raise NotFoundError(f"no pipeline producing {produces} is configured", param="model")

    def select(self, name: str | None, produces: str) -> PipelineSpec:
        """The requested pipeline, or the default one when the request names none."""
        return self.default_for(produces) if name is None else self.resolve(name, produces=produces)


def build_catalog(config: EngineConfig) -> PipelineCatalog:
    """Validate every pipeline against the model registry.

    Raises:
        ConfigError: A stage kind no model family performs, or a model that cannot perform it.
    """
    from harmonyspeech.pipelines.stages import STAGES  # stages depend on this module

    problems = list(_stage_problems(config))
    if problems:
        raise ConfigError(problems)
    return PipelineCatalog(
        PipelineSpec(
            name=p.name,
            aliases=tuple(p.aliases),
            description=p.description,
            stages=tuple(
                StageSpec(s.kind, s.model, dict(s.options), config.model(s.model)) for s in p.stages
            ),
            produces=STAGES[p.stages[-1].kind].produces,
        )
        for p in config.pipelines
    )


def load_checked_config(path: str) -> EngineConfig:
    """Load a config file and validate its pipelines against the model registry.

    Raises:
        ConfigError: Every problem, with its path in the file.
    """
    config = load_config(path)
    try:
        build_catalog(config)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=path) from None
    return config


def _stage_problems(config: EngineConfig) -> Iterator[tuple[str, str]]:
    known_kinds = sorted({kind for info in FAMILIES.values() for kind in info.tasks})
    models = {m.name: m for m in config.models}
    for i, pipeline in enumerate(config.pipelines):
        for j, stage in enumerate(pipeline.stages):
            path = f"pipelines[{i}].stages[{j}]"
            if stage.kind not in known_kinds:
                yield f"{path}.kind", f"unknown stage kind {stage.kind!r}; known: {known_kinds}"
                continue
            model = models.get(stage.model)
            if model is not None and stage.kind not in FAMILIES[model.family].tasks:
                yield (
                    f"{path}.model",
                    f"model {stage.model!r} (family {model.family}) cannot run a "
                    f"{stage.kind!r} stage",
                )
                continue
            problems = list(_option_problems(f"{path}.options", stage.kind, stage.options))
            yield from problems
            if model is not None and not problems:
                yield from _model_problems(f"{path}.options", stage.kind, stage.options, model)
        yield from _order_problems(i, [stage.kind for stage in pipeline.stages])


def _model_problems(
    path: str, kind: str, options: dict[str, Any], model: ModelConfig
) -> Iterator[tuple[str, str]]:
    """A stage's options against its model's: a stage kind that depends on them says so with a
    ``model_problems(options, model)`` method."""
    from harmonyspeech.pipelines.stages import STAGES  # stages depend on this module

    check = getattr(STAGES[kind], "model_problems", None)
    for message in check(options, model) if check else ():
        yield path, message


def _order_problems(index: int, kinds: list[str]) -> Iterator[tuple[str, str]]:
    """An item source (``synthesize``) comes first; item stages (e.g. ``validate``) need one
    before them."""
    from harmonyspeech.pipelines.stages import STAGES, ItemSource

    source_seen = False
    for j, kind in enumerate(kinds):
        stage = STAGES.get(kind)
        if stage is None:
            continue
        if getattr(stage, "needs_item_source", False) and not source_seen:
            yield (
                f"pipelines[{index}].stages[{j}].kind",
                f"a {kind!r} stage needs a 'synthesize' stage before it",
            )
        if isinstance(stage, ItemSource) and j > 0:
            # It takes the request's text: a stage before it would have no input to work on.
            yield (
                f"pipelines[{index}].stages[{j}].kind",
                f"a {kind!r} stage must come first in its pipeline",
            )
        if source_seen and not hasattr(stage, "process"):
            yield (
                f"pipelines[{index}].stages[{j}].kind",
                f"a {kind!r} stage cannot follow 'synthesize', which runs sentence by sentence",
            )
        source_seen = source_seen or isinstance(stage, ItemSource)


def _option_problems(path: str, kind: str, options: dict[str, Any]) -> Iterator[tuple[str, str]]:
    from harmonyspeech.pipelines.stages import STAGES  # stages depend on this module

    try:
        STAGES[kind].check_options(options)
    except ValidationError as exc:
        for where, message in format_validation_errors(exc):
            yield f"{path}.{where}", message
    except (ValueError, TypeError) as exc:
        yield path, str(exc)
