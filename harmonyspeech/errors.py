"""The engine's error hierarchy.

Every error a request can meet is one of these classes. Each class carries the HTTP status and the
OpenAI error ``type`` it maps to, so the API layer maps them in exactly one place
(``harmonyspeech.api.errors``). A user's mistake is a 4xx; a model or engine failure is a 5xx.

Errors cross process boundaries (Ray replicas), so every instance must survive pickling with all of
its fields: ``__reduce__`` rebuilds it from its keyword state rather than from ``args``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar


class HarmonySpeechError(Exception):
    """Base of all engine errors.

    Args:
        message: Human-readable explanation, shown to the client as ``error.message``.
        param: The request parameter at fault, if any (``error.param``).
        code: A short machine-readable code (``error.code``); defaults to the class's code.
    """

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "param": self.param, "code": self.code}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self._state()))

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers the response for this error must carry."""
        return {}

    def to_envelope(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def _rebuild_error(cls: type[HarmonySpeechError], state: dict[str, Any]) -> HarmonySpeechError:
    return cls(**state)


class InvalidRequestError(HarmonySpeechError):
    """The request is malformed or asks for something the engine cannot do (400)."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_request"


class AuthenticationError(HarmonySpeechError):
    """Missing or wrong API key (401)."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFoundError(HarmonySpeechError):
    """The named model, pipeline, voice or route does not exist (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowedError(HarmonySpeechError):
    """The route exists but not for this HTTP method (405); ``allowed`` lists the methods it
    takes, which the response names in its ``Allow`` header (RFC 9110 requires it)."""

    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        allowed: tuple[str, ...] = (),
    ):
        super().__init__(message, param=param, code=code)
        self.allowed = tuple(allowed)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "allowed": self.allowed}

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class PayloadTooLargeError(HarmonySpeechError):
    """An upload exceeds the configured size or duration limit (413)."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class OverloadedError(HarmonySpeechError):
    """A bounded queue is full; the client should retry after ``retry_after_s`` (503).

    The OpenAI SDK retries 503 responses and honours ``Retry-After``.
    """

    status_code = 503
    error_type = "server_error"
    default_code = "server_overloaded"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float = 1.0,
    ):
        super().__init__(message, param=param, code=code)
        self.retry_after_s = retry_after_s

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after_s)))}


class RateLimitError(OverloadedError):
    """An API key used up its requests or audio-seconds per minute; retry after
    ``retry_after_s`` (429, as OpenAI answers it; the SDK retries and honours ``Retry-After``)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class DeadlineExceededError(HarmonySpeechError):
    """The request did not finish within its deadline (504)."""

    status_code = 504
    error_type = "server_error"
    default_code = "deadline_exceeded"


class ModelLoadError(HarmonySpeechError):
    """A model could not be loaded or its replica is gone, so requests that need it cannot run
    (503). ``Retry-After`` asks for a retry a little later: models finish loading and Serve
    replaces lost replicas."""

    status_code = 503
    error_type = "server_error"
    default_code = "model_unavailable"
    retry_after_s: ClassVar[int] = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class PipelineStageError(HarmonySpeechError):
    """A pipeline stage failed for a reason that is not the client's fault (500).

    Args:
        stage: Name of the failing stage, e.g. ``"vad"``; it is also prefixed to the message.
    """

    status_code = 500
    error_type = "server_error"
    default_code = "stage_failed"

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        param: str | None = None,
        code: str | None = None,
    ):
        prefix = f"stage '{stage}' failed: "
        full = message if message.startswith(prefix) else prefix + message
        super().__init__(full, param=param, code=code)
        self.stage = stage

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "stage": self.stage}


class InternalError(HarmonySpeechError):
    """An unexpected failure inside the engine (500)."""

    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"


class ConfigError(HarmonySpeechError):
    """The engine configuration is invalid. Raised at start-up, never for a request.

    Args:
        problems: ``(path, message)`` pairs such as
            ``("models[2].batching.max_batch_size", "must be >= 1")``.
    """

    default_code = "invalid_config"
    header: ClassVar[str] = "invalid configuration"

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None):
        self.problems = list(problems)
        self.source = source
        lines = [f"{path}: {message}" for path, message in self.problems]
        header = f"{self.header}{f' in {source}' if source else ''}"
        super().__init__("\n".join([header, *lines]))

    def _state(self) -> dict[str, Any]:
        return {"problems": self.problems, "source": self.source}


class UsageError(ConfigError):
    """A command's arguments are wrong (a missing input file, an address of the wrong kind)."""

    header = "invalid arguments"


def quoted(value: str, limit: int = 80) -> str:
    """A client's value for an error message or a log line: quoted and escaped (it cannot
    forge a line of its own), and cut to ``limit`` characters (an error need not echo a
    100 kB field back)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def invalid_field(problem: Mapping[str, Any], skip: Collection[str] = ()) -> InvalidRequestError:
    """The 400 for one problem of a pydantic validation (an item of its ``errors()``): its
    location as the parameter (without the parts in ``skip``), its message without pydantic's
    "Value error, " prefix, and "field required" for a missing field."""
    location = [str(part) for part in problem.get("loc", ()) if part not in skip]
    param = ".".join(location) or None
    message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
    if problem.get("type") == "missing":
        message = "field required"
    return InvalidRequestError(f"{param}: {message}" if param else message, param=param)
