"""The composition root: the `enclave` command and the factories that build objects from settings."""

__version__ = "0.1.0"
