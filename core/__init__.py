"""Shared foundation: settings, domain types, errors and the offline guard.

Everything above `core` may import it; `core` imports nothing of the project.
"""
