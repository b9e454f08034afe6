"""Fetch the upstream MeloTTS network code, used only as a test oracle.

The PyPI sdist ``melotts==0.1.1`` cannot be pip-installed (it lacks ``requirements.txt``), but its
network modules import standalone with current torch. This script downloads the pinned sdist
from files.pythonhosted.org, checks its SHA-256, and extracts only the network files (and the
MIT licence) into a git-ignored cache directory. Tests never download; they skip (or fail, with
``HARMONYSPEECH_REQUIRE_MELO_REF=1``) when the cache is missing.

Usage::

    python tests/unit/melo/fetch_reference.py            # into .cache/melotts-ref
    python tests/unit/melo/fetch_reference.py --dest DIR

``load_reference(dest)`` imports the cached code as the package ``melotts_reference`` (without
touching ``sys.path``) and returns its ``models`` module, whose ``SynthesizerTrn`` is upstream's;
``reference_network`` builds it from a checkpoint directory as upstream does, and
``reference_infer`` runs one item through it as upstream's ``TTS.tts_to_file`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import io
import json
import os
import sys
import tarfile
import urllib.request
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DEST = Path(os.environ.get("HARMONYSPEECH_MELO_REF", ROOT / ".cache" / "melotts-ref"))

# From https://pypi.org/pypi/melotts/json (release 0.1.1, the only one).
SDIST_URL = (
    "https://files.pythonhosted.org/packages/3b/a1/"
    "3f0570d4bf21eb71e862c52920a5ccb54321df5fed5fc56380e80ae091b6/melotts-0.1.1.tar.gz"
)
SDIST_SHA256 = "e1ce679ee827e99b8eeaac5715e432737fa9d00f197139d4c85757464b76d1dd"
MEMBERS = (
    "LICENSE",
    "melo/__init__.py",
    "melo/attentions.py",
    "melo/commons.py",
    "melo/models.py",
    "melo/modules.py",
    "melo/transforms.py",
)
PACKAGE = "melotts_reference"


def is_fetched(dest: Path = DEFAULT_DEST) -> bool:
    """Whether every reference file is in ``dest``."""
    return all((dest / member).is_file() for member in MEMBERS)


def fetch(dest: Path = DEFAULT_DEST, *, timeout_s: float = 60.0) -> Path:
    """Download and extract the reference files into ``dest`` unless already there."""
    if is_fetched(dest):
        return dest
    with urllib.request.urlopen(SDIST_URL, timeout=timeout_s) as response:
        payload = response.read()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"melotts sdist SHA-256 mismatch: {digest} != {SDIST_SHA256}")
    prefix = "melotts-0.1.1/"
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in MEMBERS:
            source = archive.extractfile(prefix + member)
            if source is None:
                raise RuntimeError(f"{member} missing from the melotts sdist")
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
    return dest


def load_reference(dest: Path = DEFAULT_DEST) -> ModuleType:
    """Import the cached upstream ``melo.models`` as ``melotts_reference.models``."""
    if PACKAGE not in sys.modules:
        package_dir = dest / "melo"
        spec = importlib.util.spec_from_file_location(
            PACKAGE, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import the MeloTTS reference from {package_dir}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACKAGE}.models")


def reference_network(checkpoint: Path, dest: Path = DEFAULT_DEST) -> Any:
    """Upstream's ``SynthesizerTrn`` for ``checkpoint``, loaded strictly, in eval mode."""
    import torch

    with warnings.catch_warnings():
        # Upstream uses the legacy weight_norm and torch.jit.script, both deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        models = load_reference(dest)
        config = json.loads((checkpoint / "config.json").read_text())
        data = config["data"]
        network = models.SynthesizerTrn(
            len(config["symbols"]),
            data["filter_length"] // 2 + 1,
            config["train"]["segment_size"] // data["hop_length"],
            n_speakers=data["n_speakers"],
            num_tones=config["num_tones"],
            num_languages=config["num_languages"],
            **config["model"],
        )
    state = torch.load(checkpoint / "checkpoint.pth", map_location="cpu", weights_only=True)
    network.load_state_dict(state["model"], strict=True)
    return network.eval()


def reference_infer(network: Any, item: Any, device: str = "cpu") -> Any:
    """One ``SynthesisItem`` through upstream's ``infer``, seeded as upstream's ``TTS`` does.

    Gradients follow the caller's mode (upstream's ``TTS`` runs under ``torch.no_grad``);
    ``device`` is where ``network`` lives.
    """
    import torch

    def tensor(values: Any) -> Any:
        return torch.as_tensor(values, device=device)

    n = item.n_tokens
    torch.manual_seed(item.seed)
    audio = network.infer(
        tensor(item.phones)[None],
        tensor([n]),
        tensor([item.speaker_id]),
        tensor(item.tones)[None],
        tensor(item.languages)[None],
        torch.zeros(1, 1024, n, device=device),
        tensor(item.ja_bert)[None],
        sdp_ratio=item.sdp_ratio,
        noise_scale=item.noise_scale,
        noise_scale_w=item.noise_scale_w,
        length_scale=item.length_scale,
    )[0]
    return audio[0, 0].detach().cpu().numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args()
    try:
        print(fetch(args.dest))
    except OSError as exc:  # no network (urllib's URLError is an OSError)
        if os.environ.get("HARMONYSPEECH_REQUIRE_MELO_REF") == "1":
            raise
        print(
            f"could not fetch the upstream MeloTTS reference ({exc}); its parity tests will skip",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
