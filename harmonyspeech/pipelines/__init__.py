"""Config-defined pipelines: stage specs, stage implementations and the runner."""
