"""Batch jobs: a JSONL file of speech requests synthesised to files, resumably.

A consumer of the engine like the HTTP API: every line goes through the same pipelines and
schedulers as live requests, at batch priority (``harmonyspeech batch run`` / ``batch submit``).
"""
