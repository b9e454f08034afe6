"""harmonyspeech: a multi-model speech engine on Ray Serve with an OpenAI-compatible API."""

__version__ = "0.1.0"
