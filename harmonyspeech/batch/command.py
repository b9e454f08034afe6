"""``harmonyspeech batch run`` and ``batch submit``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from harmonyspeech.batch.job import BatchOptions, BatchSummary, run_batch
from harmonyspeech.batch.lines import BatchLine, read_lines
from harmonyspeech.errors import ConfigError, HarmonySpeechError, ModelLoadError, UsageError
from harmonyspeech.pipelines.runtime import EngineRuntime, LocalEngine
from harmonyspeech.pipelines.spec import load_checked_config

logger = logging.getLogger(__name__)

DEFAULT_APP = "harmonyspeech"
READY_POLL_S = 2.0
EXIT_INTERRUPTED = 130


def add_batch_commands(commands: Any) -> None:
    """The ``batch`` command group of the CLI."""
    batch = commands.add_parser("batch", help="synthesise a JSONL file of speech requests")
    actions = batch.add_subparsers(required=True, metavar="ACTION")

    run = actions.add_parser("run", help="run a batch here (or inside a submitted Ray job)")
    _common_options(run)
    run.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster whose running Serve app to use (default: $RAY_ADDRESS, set inside "
        "Ray jobs); without one, or without a running app, the models run in this process",
    )
    run.set_defaults(handler=run_command)

    submit = actions.add_parser("submit", help="submit a batch to a Ray cluster as a job")
    _common_options(submit)
    submit.add_argument("--address", required=True, help="Ray dashboard, http://HEAD:8265")
    submit.add_argument("--python", default="python", help="interpreter on the cluster")
    submit.add_argument("--num-cpus", type=float, help="CPUs reserved for the job's driver")
    submit.add_argument("--num-gpus", type=float, help="GPUs reserved for the job's driver")
    submit.add_argument("--submission-id", help="job id to use (default: Ray's)")
    submit.add_argument(
        "--no-wait", action="store_true", help="print the job id and return at once"
    )
    submit.set_defaults(handler=submit_command)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="JSONL file, one speech request per line")
    parser.add_argument("--out", required=True, help="output directory (created; resumable)")
    parser.add_argument(
        "--config",
        type=Path,
        help="engine config for running the models in-process (no Serve app running)",
    )
    parser.add_argument("--app", default=DEFAULT_APP, help="Serve app to use on a cluster")
    parser.add_argument("--model", help="model for lines without one (e.g. tts-1)")
    parser.add_argument("--voice", help="voice for lines without one")
    parser.add_argument("--response-format", help="format for lines without one (default mp3)")
    parser.add_argument("--concurrency", type=int, default=16, help="lines in flight")
    parser.add_argument(
        "--line-timeout-s", type=float, default=900.0, help="deadline of one line's work"
    )
    parser.add_argument(
        "--ready-timeout-s", type=float, default=900.0, help="longest wait for models to load"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_input(args: argparse.Namespace) -> None:
    if not args.input.is_file():
        raise UsageError([("input", f"no such file: {args.input}")])


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    pairs = (
        ("model", args.model),
        ("voice", args.voice),
        ("response_format", args.response_format),
    )
    return {key: value for key, value in pairs if value is not None}


def _forwarded_options(args: argparse.Namespace) -> list[str]:
    """The run options a submitted job passes on to ``batch run`` on the cluster."""
    options = ["--app", args.app, "--concurrency", str(args.concurrency)]
    options += ["--line-timeout-s", str(args.line_timeout_s)]
    options += ["--ready-timeout-s", str(args.ready_timeout_s)]
    for flag, value in _defaults(args).items():
        options += [f"--{flag.replace('_', '-')}", value]
    if args.no_progress:
        options.append("--no-progress")
    return options


def run_command(args: argparse.Namespace) -> int:
    _check_input(args)
    if args.address and args.address.startswith(("http://", "https://")):
        # `ray job submit` users export the dashboard's URL as RAY_ADDRESS; ray.init refuses it.
        raise UsageError(
            [
                (
                    "--address (default: RAY_ADDRESS)",
                    f"{args.address} is a Ray dashboard URL, which `batch submit` takes; "
                    "`batch run` joins a cluster at its GCS address (HOST:6379, as `ray start` "
                    "prints it); to run the models here, leave both unset",
                )
            ]
        )
    lines = read_lines(args.input, _defaults(args))
    options = BatchOptions(concurrency=max(1, args.concurrency), line_timeout_s=args.line_timeout_s)
    try:
        summary = asyncio.run(_run(args, lines, options))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.describe(), flush=True)
    return 0


async def _run(
    args: argparse.Namespace, lines: list[BatchLine], options: BatchOptions
) -> BatchSummary:
    from tqdm import tqdm

    async with open_runtime(args, lines) as runtime:
        with tqdm(total=len(lines), unit="line", disable=args.no_progress, mininterval=1.0) as bar:
            return await run_batch(runtime, lines, Path(args.out), options, bar.update)


@asynccontextmanager
async def open_runtime(
    args: argparse.Namespace, lines: list[BatchLine]
) -> AsyncIterator[EngineRuntime]:
    """The running Serve app's deployments when there is one, else models in this process."""
    if args.address:
        from harmonyspeech.serve.ray_env import prepare_ray_auth

        prepare_ray_auth(args.address)
        from harmonyspeech.serve import attach

        attach.connect(args.address)
        if attach.running_app(args.app):
            runtime = await attach.attached_runtime(args.app, args.ready_timeout_s)
            await wait_ready(runtime, args.ready_timeout_s, models_used(runtime, lines))
            yield runtime
            return
        logger.info("no running Serve app %r on the cluster: models run in this job", args.app)
    if args.config is None:
        raise ConfigError(
            [("--config", "required when no harmonyspeech Serve app is running to attach to")]
        )
    engine = LocalEngine(load_checked_config(str(args.config)))
    await asyncio.to_thread(engine.start, timeout=args.ready_timeout_s)
    try:
        # A model that failed to load here never recovers: stop now rather than fail every line.
        await wait_ready(engine.runtime, args.ready_timeout_s, models_used(engine.runtime, lines))
        yield engine.runtime
    finally:
        await asyncio.to_thread(engine.stop)


def models_used(runtime: EngineRuntime, lines: list[BatchLine]) -> set[str]:
    """The model instances of the pipelines the lines ask for (a line naming no pipeline
    that exists fails alone, later)."""
    names = {line.request.model for line in lines if line.request is not None}
    used: set[str] = set()
    for name in names:
        try:
            pipeline = runtime.catalog.select(name, produces="speech")
        except HarmonySpeechError:
            continue
        used.update(stage.model for stage in pipeline.stages)
    return used


async def wait_ready(runtime: EngineRuntime, timeout_s: float, models: set[str]) -> None:
    """Wait (bounded) until ``models`` of the attached app have loaded.

    Raises:
        ModelLoadError: One failed to load (at once, with its error), or they were not all
            ready within ``timeout_s``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        statuses = await runtime.model_statuses()
        failed = [
            f"{name}: {statuses[name].get('error')}"
            for name in sorted(models)
            if statuses[name].get("state") == "failed"
        ]
        if failed:
            raise ModelLoadError(f"a model the batch needs failed to load: {'; '.join(failed)}")
        waiting = sorted(n for n in models if statuses[n].get("state") != "ready")
        if not waiting:
            return
        if loop.time() > deadline:
            raise ModelLoadError(f"not ready after {timeout_s:.0f} s: {', '.join(waiting)}")
        await asyncio.sleep(READY_POLL_S)


def submit_command(args: argparse.Namespace) -> int:
    _check_input(args)
    from harmonyspeech.serve.ray_env import prepare_ray_auth

    prepare_ray_auth(args.address)
    from harmonyspeech.serve import jobs

    job = jobs.BatchSubmission(
        input_path=args.input,
        # Relative paths would land in the job's temporary working dir on the cluster.
        out_dir=os.path.abspath(args.out),
        run_args=_forwarded_options(args),
        config_path=args.config,
        python=args.python,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        submission_id=args.submission_id,
    )
    try:
        job_id = jobs.submit(args.address, job)
    except ConnectionError as exc:
        raise UsageError([("--address", f"no Ray dashboard answers there: {exc}")]) from None
    except (ValueError, RuntimeError) as exc:  # e.g. a --submission-id already used
        raise UsageError([("job", f"the cluster refused it: {exc}")]) from None
    print(f"submitted batch job {job_id}; output in {job.out_dir} on the cluster", flush=True)
    if args.no_wait:
        print(f"follow it with: ray job logs --follow {job_id} --address {args.address}")
        return 0
    status = jobs.follow(args.address, job_id)
    print(f"batch job {job_id}: {status.value}", file=sys.stderr, flush=True)
    return 0 if status == jobs.JobStatus.SUCCEEDED else 1
