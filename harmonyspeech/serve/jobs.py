"""Submit batch jobs to a Ray cluster through its job submission API, and follow them.

The input file (and an engine config, when given) travel in the job's ``working_dir``, so the
submitting machine needs no shared filesystem with the cluster; the output directory is a path
on the cluster (a shared volume on a multi-node cluster). Import this module only after
``harmonyspeech.serve.ray_env.prepare_ray_auth``.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

INPUT_NAME = "input.jsonl"
CONFIG_NAME = "engine.yaml"
FINAL_STATES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)


@dataclass(frozen=True)
class BatchSubmission:
    """What to run on the cluster."""

    input_path: Path
    out_dir: str
    """Output directory as the cluster sees it."""
    run_args: Sequence[str] = ()
    """Further ``harmonyspeech batch run`` options (``--concurrency 32``, ...)."""
    config_path: Path | None = None
    """Engine config for running the models inside the job when no Serve app is running."""
    python: str = "python"
    """Python interpreter on the cluster that has harmonyspeech installed."""
    num_cpus: float | None = None
    num_gpus: float | None = None
    """Resources reserved for the job's driver (it runs the models itself without a Serve app)."""
    submission_id: str | None = None


def submit(address: str, job: BatchSubmission) -> str:
    """Submit ``job``; returns its submission id."""
    client = JobSubmissionClient(address)
    with tempfile.TemporaryDirectory(prefix="harmonyspeech-job-") as staging:
        shutil.copyfile(job.input_path, Path(staging) / INPUT_NAME)
        command = [job.python, "-m", "harmonyspeech", "batch", "run", INPUT_NAME]
        command += ["--out", job.out_dir, *job.run_args]
        if job.config_path is not None:
            shutil.copyfile(job.config_path, Path(staging) / CONFIG_NAME)
            command += ["--config", CONFIG_NAME]
        # The working dir is uploaded before submit_job returns, so the staging dir can go.
        return client.submit_job(
            entrypoint=shlex.join(command),
            runtime_env={"working_dir": staging},
            submission_id=job.submission_id,
            entrypoint_num_cpus=job.num_cpus,
            entrypoint_num_gpus=job.num_gpus,
            metadata={"harmonyspeech": "batch", "out": job.out_dir},
        )


def follow(address: str, job_id: str, *, poll_s: float = 1.0) -> JobStatus:
    """Print the job's logs as they come until it ends; returns its final status."""
    client = JobSubmissionClient(address)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())
    # The log stream can close a moment before the job's final state is recorded.
    deadline = time.monotonic() + 60
    status = client.get_job_status(job_id)
    while status not in FINAL_STATES and time.monotonic() < deadline:
        time.sleep(poll_s)
        status = client.get_job_status(job_id)
    return status
