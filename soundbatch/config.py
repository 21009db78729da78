"""The one frozen settings object of a sweep.

Built once (TOML file, then command-line overrides), validated at start so a
bad setting fails before any work with a message naming it, passed explicitly,
and written next to every run's output (``runs/<run_id>.json``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soundbatch.errors import ConfigError

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})


class SweepConfig(BaseModel):
    """Every setting of a sweep. ``None`` means "the model card's default" where noted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: tuple[str, ...] = Field(min_length=1, description="folders, globs, s3:// prefixes or URI lists")
    out: str = Field(min_length=1, description="output root, local folder or s3://bucket/prefix")
    model: str | None = Field(default=None, description="ONNX model path or s3:// URI; None: bundled")
    rms_gate_dbfs: float | None = Field(default=None, le=0.0, description="None: card default")
    ood_threshold: float | dict[str, float] | None = Field(default=None, description="None: card default")
    write_windows: bool = False
    path_pattern: str | None = None
    min_event_s: float = Field(default=0.0, ge=0.0)
    max_gap_s: float = Field(default=0.0, ge=0.0)
    segment_s: float = Field(default=300.0, ge=5.0, le=3600.0, description="seconds of audio per unit of work")
    address: str | None = Field(default=None, description="Ray cluster to join; None: start a local one")
    device: Literal["cpu", "cuda"] = "cpu"
    num_actors: int | None = Field(default=None, ge=1, description="actors; None: one per CPU (cpu) or per GPU (cuda)")
    batch_windows: int = Field(default=256, ge=1, le=65536, description="windows per ONNX call")
    commit_recordings: int = Field(default=2000, ge=1, description="recordings per committed output file")
    commit_interval_s: float = Field(default=300.0, gt=0.0, description="commit at least this often")
    extensions: frozenset[str] = AUDIO_EXTENSIONS
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local Ray; None: all")
    object_store_mb: int | None = Field(default=None, ge=64, description="object store of a local Ray")

    @field_validator("ood_threshold")
    @classmethod
    def _threshold_range(cls, value: float | dict[str, float] | None) -> Any:
        values = value.values() if isinstance(value, dict) else [] if value is None else [value]
        for v in values:
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{v} is not a probability between 0 and 1")
        return value

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in value)

    def results_hash(
        self, *, model_sha256: str, card_json: str, rms_gate_dbfs: float, thresholds: list[float]
    ) -> str:
        """Hash of every setting that changes results (not of speed settings like segment_s).

        The effective gate levels are hashed, so "the card's default" and the same
        number given explicitly are one configuration. The card is hashed too: a
        sidecar card can change while the .onnx bytes do not. ``write_windows``
        is not: it adds a table, it changes no result.
        """
        payload = {
            "model_sha256": model_sha256,
            "card": card_json,
            "rms_gate_dbfs": rms_gate_dbfs,
            "thresholds": thresholds,
            "min_event_s": self.min_event_s,
            "max_gap_s": self.max_gap_s,
            "path_pattern": self.path_pattern,
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def build_config(*, config_file: str | Path | None = None, **overrides: Any) -> SweepConfig:
    """Settings from a TOML file (optional), overridden by keyword arguments that are not None.

    Raises
    ------
    ConfigError
        Naming each bad setting, its value and what was expected.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(Path(config_file)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("inputs",):
        if isinstance(values.get(key), str):
            values[key] = (values[key],)
    try:
        return SweepConfig(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"--config {path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from exc
    # TOML keys may be written with dashes, as on the command line.
    return {k.replace("-", "_"): v for k, v in data.items()}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {name!r}")
            continue
        got = err.get("input")
        parts.append(f"setting {name}={got!r}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)
