"""The response header that marks answers of models on random demo weights (DESIGN.md
decision 7): every endpoint that runs a pipeline carries it when one of the models the request
used has them."""

from __future__ import annotations

from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.pipelines.spec import PipelineSpec

RANDOM_WEIGHTS_HEADER = "X-HarmonySpeech-Random-Weights"


async def random_weights_headers(
    runtime: EngineRuntime, pipeline: PipelineSpec, ctx: PipelineContext | None = None
) -> dict[str, str]:
    """``{RANDOM_WEIGHTS_HEADER: "model,..."}`` naming the random-weight models of ``pipeline``
    (given the request's ``ctx``, only those its stages use); empty when there are none."""
    random = await runtime.random_weight_models(pipeline, ctx)
    return {RANDOM_WEIGHTS_HEADER: ",".join(random)} if random else {}
