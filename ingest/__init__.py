"""Ingestion: parse files, cut them into chunks, and keep the store in step with the folder."""
