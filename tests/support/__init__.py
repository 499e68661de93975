"""Helpers for tests that run real components: a tiny model for vLLM and the server that serves it."""
