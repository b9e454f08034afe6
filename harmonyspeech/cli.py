"""The ``harmonyspeech`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harmonyspeech import __version__
from harmonyspeech.config import EngineConfig, load_config
from harmonyspeech.errors import ConfigError, HarmonySpeechError
from harmonyspeech.pipelines.spec import load_checked_config

EXIT_FAILURE = 1
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
    except HarmonySpeechError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE


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

    hash_key = commands.add_parser(
        "hash-key", help="print an API key's line for server.auth.api_keys_file"
    )
    hash_key.add_argument(
        "key",
        nargs="?",
        help="the key; without it, read from standard input (keeps it out of shell history)",
    )
    hash_key.add_argument("--label", help="name of the key in logs and rate-limit overrides")
    hash_key.set_defaults(handler=_hash_key)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", help="engine config YAML")
    check.set_defaults(handler=_check_config)

    cluster = commands.add_parser(
        "build-serve-config", help="write a Ray Serve config (serve deploy, KubeRay) from ours"
    )
    cluster.add_argument("--config", required=True, help="engine config YAML")
    cluster.add_argument("--output", "-o", help="file to write (default: standard output)")
    cluster.add_argument(
        "--config-path",
        help="reference this engine config path on the cluster instead of inlining the config",
    )
    cluster.add_argument("--proxy-location", default="EveryNode", choices=["EveryNode", "HeadOnly"])
    cluster.set_defaults(handler=_build_serve_config)

    from harmonyspeech.batch.command import add_batch_commands

    add_batch_commands(commands)
    return parser


def _hash_key(args: argparse.Namespace) -> int:
    from harmonyspeech.api.auth import keys_file_line

    if args.key is not None:
        key = args.key
    elif sys.stdin.isatty():
        import getpass

        key = getpass.getpass("API key: ")
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        print("error: no key given (pass KEY or pipe it on standard input)", file=sys.stderr)
        return EXIT_FAILURE
    print(keys_file_line(key, args.label))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_checked_config(args.file)
    keys_file = config.server.auth.api_keys_file
    warnings = [_exposure_warning(config)]
    if keys_file and Path(keys_file).expanduser().is_file():
        from harmonyspeech.api.auth import with_resolved_keys

        with_resolved_keys(config)  # the keys file, and the rate-limit labels it defines
    elif keys_file:
        warnings.append(f"no keys file {keys_file!r} here: serving reads it where it runs")
    print(f"{args.file}: OK ({len(config.models)} model(s), {len(config.pipelines)} pipeline(s))")
    for warning in filter(None, warnings):
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    return 0


def _exposure_warning(config: EngineConfig) -> str | None:
    """Why serving this config may be refused for want of API keys, or None.

    Keys may come from the environment where the app runs, so this is no error here, but a
    config that only starts given them should say so before it is deployed.
    """
    from harmonyspeech.api.auth import is_loopback

    server = config.server
    auth = server.auth
    keys_in_config = auth.api_key_hashes or auth.api_keys_file
    if is_loopback(server.host) or auth.allow_insecure_no_auth or keys_in_config:
        return None
    if os.environ.get(auth.api_keys_env, "").strip():
        return None
    return (
        f"server.host {server.host} is not loopback and the config holds no API keys: serving "
        f"it is refused unless {auth.api_keys_env} holds keys where it runs"
    )


def _build_serve_config(args: argparse.Namespace) -> int:
    import yaml

    from harmonyspeech.serve.serve_config import build_serve_config

    config = load_checked_config(args.config)
    document = build_serve_config(
        config, config_path=args.config_path, proxy_location=args.proxy_location
    )
    header = (
        f"# Ray Serve config generated by `harmonyspeech build-serve-config --config "
        f"{args.config}`.\n# Deploy: serve deploy FILE -a http://HEAD:8265 (see README, "
        '"Run on a cluster").\n'
    )
    text = header + yaml.safe_dump(document, sort_keys=False, width=100)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from harmonyspeech.api.auth import ApiKeyVerifier, ensure_safe_binding, with_resolved_keys

    config = load_checked_config(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides or args.insecure_no_auth:
        data = config.model_dump()
        data["server"].update(overrides)
        if args.insecure_no_auth:
            # Carried in the config: a cluster's Serve may listen elsewhere, checked later.
            data["server"]["auth"]["allow_insecure_no_auth"] = True
        config = load_config(data)
    config = with_resolved_keys(config)  # the keys file is read here, once
    auth = config.server.auth
    # Checked before Ray starts; on a joined cluster, where its Serve listens is checked too.
    ensure_safe_binding(
        config.server.host,
        ApiKeyVerifier.from_config(auth),
        allow_insecure=auth.allow_insecure_no_auth,
        keys_env=auth.api_keys_env,
    )
    from harmonyspeech.serve.ray_env import prepare_ray_auth

    prepare_ray_auth(config.server.ray.address)
    from harmonyspeech.serve.local import run_until_signalled

    run_until_signalled(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
