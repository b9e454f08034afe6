"""Generate the committed VAD test clips and their ground-truth speech regions.

Run once (needs Debian's ``espeak-ng``): ``python tests/data/make_vad_clips.py``. The outputs
(``tests/data/vad/*.flac`` and ``tests/data/vad/regions.json``) are committed; tests never run
this script. Each clip is 16 kHz mono: espeak-ng phrases placed at known offsets over low
background noise, with non-speech distractors (a 440 Hz tone, a white-noise burst). A region's
start and end are the first and last sample of the phrase above 1% of its peak.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import av
import numpy as np

RATE = 16000
OUT = Path(__file__).parent / "vad"
RNG = np.random.default_rng(20261120)

CLIPS: dict[str, list[tuple[str, float, str]]] = {
    # (kind, gap before in seconds, text or parameter)
    "two_phrases": [
        ("speech", 0.8, "The quick brown fox jumps over the lazy dog."),
        ("speech", 1.6, "Batching many requests together is the whole game."),
        ("silence", 0.9, ""),
    ],
    "distractors": [
        ("speech", 1.0, "Hello there, this clip has a tone and some noise in it."),
        ("tone", 1.2, "440"),
        ("noise", 1.2, "0.2"),
        ("speech", 1.2, "And then the speaker talks again."),
        ("silence", 1.0, ""),
    ],
    "short": [
        ("speech", 0.5, "Yes, please."),
        ("silence", 0.6, ""),
    ],
}


def espeak(text: str) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    with av.open(io.BytesIO(wav)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        frames += resampler.resample(None)
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])
    loud = np.flatnonzero(np.abs(samples) > 0.01 * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1] * 0.8 / np.abs(samples).max()


def distractor(kind: str, parameter: str) -> np.ndarray:
    t = np.arange(RATE) / RATE
    if kind == "tone":
        return 0.3 * np.sin(2 * np.pi * float(parameter) * t)
    return float(parameter) * RNG.standard_normal(RATE)


def build(parts: list[tuple[str, float, str]]) -> tuple[np.ndarray, list[dict[str, float]]]:
    pieces: list[np.ndarray] = []
    regions: list[dict[str, float]] = []
    cursor = 0
    for kind, gap, arg in parts:
        pieces.append(np.zeros(int(gap * RATE)))
        cursor += int(gap * RATE)
        if kind == "silence":
            continue
        body = espeak(arg) if kind == "speech" else distractor(kind, arg)
        if kind == "speech":
            regions.append({"start": cursor / RATE, "end": (cursor + len(body)) / RATE})
        pieces.append(body)
        cursor += len(body)
    clip = np.concatenate(pieces)
    clip += 0.002 * RNG.standard_normal(len(clip))
    return np.clip(clip, -1, 1).astype(np.float32), regions


def write_flac(path: Path, samples: np.ndarray) -> None:
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (samples * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    truth = {}
    for name, parts in CLIPS.items():
        samples, regions = build(parts)
        write_flac(OUT / f"{name}.flac", samples)
        truth[name] = {"duration": len(samples) / RATE, "speech": regions}
    (OUT / "regions.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
