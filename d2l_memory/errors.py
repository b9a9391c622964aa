"""Exceptions of the engine. Each message names the bad input and the fix."""

from __future__ import annotations


class D2LError(Exception):
    """Base class of every d2l-memory engine error."""


class ConfigError(D2LError, ValueError):
    """A config field holds a bad value."""


class ModelNotFoundError(D2LError, OSError):
    """A base model id or path could not be resolved."""


class CheckpointError(D2LError):
    """A hypernetwork checkpoint is missing, corrupt, truncated or made for another base model."""


class InputError(D2LError, ValueError):
    """Text or messages handed to the engine are unusable (empty, not UTF-8, wrong type)."""


class AdapterError(D2LError, ValueError):
    """An adapter does not fit the base model or another adapter."""
