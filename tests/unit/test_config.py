"""Config loading, validation messages with paths, and the check-config command."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel

from harmonyspeech import config as cfg
from harmonyspeech.api.auth import hash_key, with_resolved_keys
from harmonyspeech.cli import main
from harmonyspeech.errors import ConfigError
from harmonyspeech.pipelines.spec import build_catalog
from tests.conftest import ROOT

MINIMAL = {
    "models": [{"name": "vad", "family": "silero-vad"}],
    "pipelines": [{"name": "vad", "stages": [{"kind": "vad", "model": "vad"}]}],
}


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        cfg.load_config(data)
    return info.value.problems


def with_models(*models: dict) -> dict:
    return {**MINIMAL, "models": [{"name": "vad", "family": "silero-vad"}, *models]}


@pytest.mark.parametrize("name", ["default.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = cfg.load_config(ROOT / "configs" / name)
    assert config.server.host == "127.0.0.1"
    assert {m.family for m in config.models} == {
        "silero-vad",
        "faster-whisper",
        "melotts",
        "openvoice",
    }
    names = {p.name for p in config.pipelines} | {a for p in config.pipelines for a in p.aliases}
    assert {"tts-1", "whisper-1", "vad", "clone"} <= names


def test_defaults_are_applied() -> None:
    config = cfg.load_config(MINIMAL)
    assert config.server.port == 8000
    assert config.models[0].batching.max_batch_size == 16
    assert config.models[0].options.threshold == 0.5


def test_bad_value_is_reported_with_its_path() -> None:
    bad = with_models(
        {"name": "b", "family": "silero-vad"},
        {"name": "c", "family": "silero-vad", "batching": {"max_batch_size": 0}},
    )
    assert problems(bad) == [("models[2].batching.max_batch_size", "must be >= 1")]


def test_unknown_keys_are_rejected_everywhere() -> None:
    bad = {**MINIMAL, "server": {"limits": {"max_upload_byte": 10}}, "extra": 1}
    assert set(problems(bad)) == {
        ("server.limits.max_upload_byte", "unknown key"),
        ("extra", "unknown key"),
    }


def test_unknown_family_names_the_known_ones() -> None:
    [(path, message)] = problems(with_models({"name": "w", "family": "whisper"}))
    assert path == "models[1].family"
    assert "silero-vad" in message and "faster-whisper" in message


def test_missing_family_is_reported_on_the_family_key() -> None:
    assert problems(with_models({"name": "w"})) == [("models[1].family", "required")]


def test_family_specific_options_are_validated() -> None:
    bad = with_models({"name": "w", "family": "faster-whisper", "options": {"beam_size": 0}})
    assert problems(bad) == [("models[1].options.beam_size", "must be >= 1")]


def test_dtype_is_only_accepted_where_a_decoder_uses_it() -> None:
    """Whisper's precision is its ``compute_type`` and Silero's is fixed: a ``dtype`` there
    would be silently ignored, so it is refused like any unknown key."""
    bad = with_models(
        {"name": "w", "family": "faster-whisper", "dtype": "float16"},
        {"name": "v", "family": "silero-vad", "dtype": "bfloat16"},
    )
    assert problems(bad) == [("models[1].dtype", "unknown key"), ("models[2].dtype", "unknown key")]
    good = cfg.load_config(
        with_models(
            {"name": "m", "family": "melotts", "dtype": "auto"},
            {"name": "o", "family": "openvoice", "dtype": "bfloat16"},
        )
    )
    assert [m.dtype for m in good.models[1:]] == ["auto", "bfloat16"]


def test_cross_references_are_checked() -> None:
    bad = {
        "models": [{"name": "a", "family": "silero-vad"}, {"name": "a", "family": "silero-vad"}],
        "pipelines": [
            {"name": "p", "stages": [{"kind": "vad", "model": "missing"}]},
            {"name": "q", "aliases": ["p"], "stages": [{"kind": "vad", "model": "a"}]},
        ],
    }
    found = dict(problems(bad))
    assert found["models[1].name"] == "duplicate model name 'a'"
    assert found["pipelines[0].stages[0].model"].startswith("unknown model 'missing'")
    assert found["pipelines[1].aliases[0]"] == "'p' already names pipeline 'p'"


def test_max_ongoing_requests_below_batch_size_is_refused() -> None:
    model = {
        "name": "v",
        "family": "silero-vad",
        "batching": {"max_batch_size": 32},
        "deployment": {"max_ongoing_requests": 5},
    }
    [(path, message)] = problems(with_models(model))
    assert path == "models[1].deployment.max_ongoing_requests"
    assert "max_batch_size (32)" in message


@pytest.mark.parametrize(
    ("origins", "complaint"),
    [
        (["*", "https://a.example"], "list it alone"),
        (["https://a.example/app"], "is not an origin"),
        (["a.example"], "is not an origin"),
    ],
)
def test_cors_origins_must_be_origins(origins: list[str], complaint: str) -> None:
    [(where, message)] = problems({**MINIMAL, "server": {"cors": {"allow_origins": origins}}})
    assert where == "server.cors.allow_origins" and complaint in message


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path)
    assert info.value.problems[0][0].startswith("line ")


def _config_models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [cfg.EngineConfig]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            for candidate in _types_in(field.annotation):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    pending.append(candidate)
    return seen


def _types_in(annotation: object) -> list[object]:
    args = getattr(annotation, "__args__", ())
    return [annotation, *(t for arg in args for t in _types_in(arg))]


def test_every_config_field_is_documented() -> None:
    undocumented = [
        f"{model.__name__}.{name}"
        for model in _config_models()
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert len(_config_models()) >= 10
    assert undocumented == []


def test_config_error_survives_pickling() -> None:
    error = ConfigError([("a.b", "bad")], source="x.yaml")
    clone = pickle.loads(pickle.dumps(error))
    assert clone.problems == [("a.b", "bad")] and clone.source == "x.yaml"


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "configs" / "default.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - {name: a, family: silero-vad}\n"
        "  - {name: b, family: silero-vad}\n"
        "  - {name: c, family: silero-vad, batching: {max_batch_size: 0}}\n"
        "pipelines:\n  - {name: p, stages: [{kind: vad, model: a}]}\n"
    )
    assert main(["check-config", str(bad)]) == 2
    assert "models[2].batching.max_batch_size: must be >= 1" in capsys.readouterr().err


def test_check_config_warns_of_a_public_host_without_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve and serve deploy refuse it unless keys come from the environment where they run.
    monkeypatch.delenv("HARMONYSPEECH_API_KEYS", raising=False)
    config = tmp_path / "public.yaml"
    models = "models:\n  - {name: a, family: silero-vad}\n"
    pipelines = "pipelines:\n  - {name: p, stages: [{kind: vad, model: a}]}\n"
    config.write_text("server: {host: 0.0.0.0}\n" + models + pipelines)
    assert main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "warning: server.host 0.0.0.0 is not loopback" in err
    assert "HARMONYSPEECH_API_KEYS" in err

    monkeypatch.setenv("HARMONYSPEECH_API_KEYS", "sk-test-0123456789")
    assert main(["check-config", str(config)]) == 0
    assert capsys.readouterr().err == ""

    monkeypatch.delenv("HARMONYSPEECH_API_KEYS")
    overridden = "server: {host: 0.0.0.0, auth: {allow_insecure_no_auth: true}}\n"
    config.write_text(overridden + models + pipelines)
    assert main(["check-config", str(config)]) == 0
    assert capsys.readouterr().err == ""


def test_check_config_validates_stage_kinds(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "stages.yaml"
    bad.write_text(
        "models:\n  - {name: a, family: silero-vad}\n"
        "pipelines:\n  - {name: p, stages: [{kind: vad, model: a}, {kind: sing, model: a}]}\n"
    )
    assert main(["check-config", str(bad)]) == 2
    assert "pipelines[0].stages[1].kind: unknown stage kind 'sing'" in capsys.readouterr().err


def test_the_default_config_fits_a_two_core_machine() -> None:
    """Serve replicas wait forever for CPUs the embedded Ray does not have: `make serve` must
    start on a 2-core laptop."""
    config = cfg.load_config(ROOT / "configs" / "default.yaml")
    deployments = [config.server.ingress, *(m.deployment for m in config.models)]
    assert sum(d.num_cpus * d.replicas for d in deployments) <= 2


# The SDK's voice names (openai-api-and-peers.md, section 1.1).
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage")
OPENAI_VOICES += ("shimmer", "verse", "marin", "cedar")


@pytest.mark.parametrize("name", ["default.yaml", "cluster-gpu.yaml"])
def test_shipped_configs_take_the_names_openai_clients_send(name: str) -> None:
    config = cfg.load_config(ROOT / "configs" / name)
    catalog = build_catalog(config)
    for model in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"):
        assert catalog.resolve(model, produces="speech").name == "tts", model
    for model in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"):
        assert catalog.resolve(model, produces="transcript").name == "whisper", model
    synthesizer = config.model(catalog.resolve("tts").stages[0].model)
    assert set(OPENAI_VOICES) <= set(synthesizer.options.voices)


# --- rate limits ---------------------------------------------------------------------------------


def with_server(**server: object) -> dict:
    return {**MINIMAL, "server": server}


def test_rate_limits_default_to_none() -> None:
    limits = cfg.load_config(MINIMAL).server.rate_limits
    assert limits.requests_per_minute is None and limits.audio_seconds_per_minute is None
    assert not limits.enabled and limits.backend == "memory"
    assert limits.on_backend_error == "reject"


@pytest.mark.parametrize(
    "ingress",
    [{"replicas": 2}, {"autoscaling": {"min_replicas": 1, "max_replicas": 4}}],
)
def test_memory_backend_refused_with_several_ingress_replicas(ingress: dict) -> None:
    bad = with_server(ingress=ingress, rate_limits={"requests_per_minute": 60})
    [(path, message)] = problems(bad)
    assert path == "server.rate_limits.backend"
    assert "each ingress replica" in message and "'redis'" in message


def test_several_ingress_replicas_fine_with_redis_or_without_limits() -> None:
    redis = {"requests_per_minute": 60, "backend": "redis", "redis_url": "redis://r:6379/0"}
    cfg.load_config(with_server(ingress={"replicas": 3}, rate_limits=redis))
    cfg.load_config(with_server(ingress={"replicas": 3}, rate_limits={"backend": "memory"}))
    one = {"autoscaling": {"min_replicas": 1, "max_replicas": 1}}
    cfg.load_config(with_server(ingress=one, rate_limits={"requests_per_minute": 60}))


def test_redis_backend_needs_a_url() -> None:
    [(path, message)] = problems(with_server(rate_limits={"backend": "redis"}))
    assert path == "server.rate_limits" and "redis_url or redis_url_env" in message


def test_redis_url_from_the_named_environment_variable() -> None:
    limits = cfg.RateLimitsConfig(backend="redis", redis_url_env="RATE_REDIS")
    assert limits.resolved_redis_url({"RATE_REDIS": "redis://r:6379/1"}) == "redis://r:6379/1"
    for environ in ({}, {"RATE_REDIS": ""}):
        with pytest.raises(ConfigError) as info:
            limits.resolved_redis_url(environ)
        [(path, message)] = info.value.problems
        assert path == "server.rate_limits.redis_url_env" and "RATE_REDIS is not set" in message
    plain = cfg.RateLimitsConfig(backend="redis", redis_url="redis://r:6379/0")
    assert plain.resolved_redis_url({}) == "redis://r:6379/0"


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ({"redis_url": "redis://r:6379/0", "redis_url_env": "R"}, "not both"),
        ({"redis_url_env": "not a name"}, "must match"),
    ],
)
def test_redis_url_env_is_checked(limits: dict, fragment: str) -> None:
    [(_, message)] = problems(with_server(rate_limits={"backend": "redis", **limits}))
    assert fragment in message


def test_rate_limit_values_and_override_keys_are_checked() -> None:
    bad = with_server(
        rate_limits={
            "requests_per_minute": 0,
            "overrides": {"not a label": {"requests_per_minute": 1}},
        }
    )
    found = dict(problems(bad))
    assert found["server.rate_limits.requests_per_minute"] == "must be >= 1"
    assert "hash or a key label" in found["server.rate_limits.overrides"]


def test_auth_labels_must_be_keyed_by_hash() -> None:
    bad = with_server(auth={"api_key_labels": {"sk-plain": "alpha"}})
    [(path, message)] = problems(bad)
    assert path == "server.auth.api_key_labels" and "must be 'sha256:" in message
    assert "sk-plain" not in message


def test_a_vad_neg_threshold_above_its_threshold_is_refused() -> None:
    options = {"threshold": 0.4, "neg_threshold": 0.6}
    data = {**MINIMAL, "models": [{"name": "vad", "family": "silero-vad", "options": options}]}
    [(where, message)] = problems(data)
    assert where == "models[0].options" and "neg_threshold must not be above threshold" in message


def test_an_ingress_section_that_sets_one_field_keeps_the_other_defaults() -> None:
    # The defaults used to be one instance: setting num_cpus alone unbounded the ingress queue.
    ingress = cfg.load_config({**MINIMAL, "server": {"ingress": {"num_cpus": 0.25}}}).server.ingress
    assert (ingress.num_cpus, ingress.max_ongoing_requests, ingress.max_queued_requests) == (
        0.25,
        1024,
        1024,
    )
    unbounded = {"ingress": {"max_queued_requests": None}}
    assert (
        cfg.load_config({**MINIMAL, "server": unbounded}).server.ingress.max_queued_requests is None
    )


def test_a_rate_limit_override_naming_no_key_fails_the_config_check(tmp_path) -> None:
    # It used to pass check-config and fail only once Ray ran, in the ingress replica.
    overrides = {"nosuch": {"requests_per_minute": 10}}
    server = {"rate_limits": {"requests_per_minute": 5, "overrides": overrides}}
    [(where, message)] = problems({**MINIMAL, "server": server})
    assert where == "server" and "overrides.nosuch: no API key has this label" in message
    # With a keys file its labels are known only once it is read, where the app is built.
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{hash_key('k')} alice\n")
    with_file = {**server, "auth": {"api_keys_file": str(keys)}}
    config = cfg.load_config({**MINIMAL, "server": with_file})
    with pytest.raises(ConfigError, match=r"overrides\.nosuch: no API key has this label"):
        with_resolved_keys(config, environ={})
    unknown_hash = {"rate_limits": {"overrides": {hash_key("other"): {"requests_per_minute": 1}}}}
    with pytest.raises(ConfigError, match="no configured API key has this hash"):
        with_resolved_keys(cfg.load_config({**MINIMAL, "server": unknown_hash}), environ={})
    # A key from the environment is one.
    env = {"HARMONYSPEECH_API_KEYS": "other"}
    assert with_resolved_keys(cfg.load_config({**MINIMAL, "server": unknown_hash}), environ=env)


def test_the_metrics_port_must_differ_from_the_http_port() -> None:
    server = {"port": 8080, "ray": {"metrics_export_port": 8080}}
    [(where, message)] = problems({**MINIMAL, "server": server})
    assert where == "server" and "metrics_export_port must differ from port" in message
