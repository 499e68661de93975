"""Answering: retrieval policy, prompts, the vLLM client, extractive answers and citations."""
