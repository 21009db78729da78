"""The one tree of soundbatch's errors.

Messages name the value that was wrong and what was expected, so a user can
act on them without reading the code.
"""

from __future__ import annotations


class SoundbatchError(Exception):
    """Base of every error soundbatch raises on purpose."""


class ConfigError(SoundbatchError, ValueError):
    """A setting is missing, malformed or out of range; raised before any work."""


class ModelCardError(SoundbatchError, ValueError):
    """A model has no card, or its card does not match its graph."""


class AudioDecodeError(SoundbatchError):
    """A recording (or a segment of it) could not be decoded."""


class StorageError(SoundbatchError):
    """Listing, reading or writing local files or S3 objects failed."""


class SchemaError(SoundbatchError, ValueError):
    """A table about to be written does not match the declared output schema."""
