"""The ``harmonyspeech`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from harmonyspeech import __version__
from harmonyspeech.config import EngineConfig, load_config
from harmonyspeech.errors import ConfigError

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_CONFIG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harmonyspeech", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the API (embedded local Ray by default)")
    serve.add_argument("--config", required=True, help="engine config YAML")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback address without API keys",
    )
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", help="engine config YAML")
    check.set_defaults(handler=_check_config)
    return parser


def validated_config(path: str) -> EngineConfig:
    """Load a config and validate its pipelines against the model registry."""
    from harmonyspeech.pipelines.spec import build_catalog

    config = load_config(path)
    try:
        build_catalog(config)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=path) from None
    return config


def _check_config(args: argparse.Namespace) -> int:
    config = validated_config(args.file)
    print(f"{args.file}: OK ({len(config.models)} model(s), {len(config.pipelines)} pipeline(s))")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from harmonyspeech.api.auth import ApiKeyVerifier, ensure_safe_binding

    config = validated_config(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        data = config.model_dump()
        data["server"].update(overrides)
        config = load_config(data)
    auth = config.server.auth
    ensure_safe_binding(
        config.server.host,
        ApiKeyVerifier.from_config(auth),
        allow_insecure=args.insecure_no_auth or auth.allow_insecure_no_auth,
    )
    from harmonyspeech.serve.ray_env import prepare_ray_auth

    prepare_ray_auth(config.server.ray.address)
    from harmonyspeech.serve.local import run_until_signalled

    run_until_signalled(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
