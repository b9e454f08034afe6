"""HTTP layer: the OpenAI-compatible API, auth and the error envelope."""
