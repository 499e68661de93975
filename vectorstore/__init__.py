"""Embedding and vector search: the Embedder, the Chroma store (embedded or server)."""
