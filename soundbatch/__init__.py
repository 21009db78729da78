"""soundbatch: find sound events in city-scale archives of audio recordings."""

__version__ = "0.1.0"
