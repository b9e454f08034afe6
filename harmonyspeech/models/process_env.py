"""Environment a process that runs models gives itself before their runtimes load.

Serve's model replicas and ``LocalEngine`` (a batch job that runs its models in its own
process) apply :data:`MODEL_ENV_DEFAULTS` first thing, where the environment
(``server.ray.runtime_env``, the cluster's or the shell's) sets neither the variable nor one
that it would override (:data:`OVERRIDDEN_BY`). OpenMP and oneDNN read these settings once,
when they load or first run, so setting them later has no effect.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

MODEL_ENV_DEFAULTS = {"GOMP_SPINCOUNT": "1000", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8192"}
"""``GOMP_SPINCOUNT``: torch and CTranslate2 run their CPU threads on GNU OpenMP, whose idle
threads spin 300,000 times before they sleep. Model replicas share a machine's cores, and
while one model's threads spin between two operations the next model in the pipeline cannot
use those cores: on 2 cores, cloned speech (MeloTTS then OpenVoice, 2 threads each) gave 2.45
audio-s/s at the default and 3.9-4.6 with 1,000 spins (four runs), while MeloTTS alone kept its
speed. Never spinning (``OMP_WAIT_POLICY=PASSIVE``) did as well for cloned speech but cost a
model alone 16 % (``python -m benchmarks cloning``; a MeloTTS-plus-converter process).

``ONEDNN_PRIMITIVE_CACHE_CAPACITY``: oneDNN builds each convolution's kernel for its exact
shapes and keeps the last 1,024 by default. A bfloat16 MeloTTS decoder needs about 60 per input
length, and the text encoder and flow more per token and frame length (lengths are bucketed,
see ``MeloNetwork.infer``): the benchmark's 16 sentences alone needed 1,028. A server's mix of
lengths overflowed the cache and rebuilt kernels on every sentence: on 2 AVX-512 cores, 41
sentences of 15-295 tokens ran at 9.1-9.5x real time with a peak of 2.2 GiB at the default,
10.5-10.6x and 1.8 GiB with 8,192; upstream's float32 loop over the benchmark's sentences went
from 3.9-4.6x to 5.4-5.8x (``python -m benchmarks melo`` has both). Memory stays bounded:
116 sentences of 5-695 tokens twice over peaked at 2.67 GiB at the default, 2.71 GiB with 8,192
(measured with the upsampling run as ordinary convolutions, a variant since dropped)."""

OVERRIDDEN_BY = {
    "GOMP_SPINCOUNT": ("OMP_WAIT_POLICY",),
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": ("DNNL_PRIMITIVE_CACHE_CAPACITY",),
}
"""Variables that choose what a default would override: GNU OpenMP ignores ``OMP_WAIT_POLICY``
when ``GOMP_SPINCOUNT`` is set, and oneDNN reads ``ONEDNN_*`` before its older ``DNNL_*``
names, so a default is left out where one of these is set."""

_OPENMP_RUNTIMES = ("torch", "ctranslate2")
"""Modules that load an OpenMP runtime (and oneDNN), which read their settings once."""


def apply_model_env_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the :data:`MODEL_ENV_DEFAULTS` whose variable ``environ`` lacks, and none of the
    :data:`OVERRIDDEN_BY` alternatives either; returns those it set.

    Must run before torch or CTranslate2 is imported in the process (model adapters import
    them in ``load()``); a warning says so when it runs too late.
    """
    applied = {
        name: value
        for name, value in MODEL_ENV_DEFAULTS.items()
        if name not in environ and not any(other in environ for other in OVERRIDDEN_BY[name])
    }
    environ.update(applied)
    loaded = [name for name in _OPENMP_RUNTIMES if name in sys.modules]
    if applied and loaded:
        logger.warning("%s already loaded: %s has no effect in this process", loaded, applied)
    return applied
