"""The model card: what a sweep needs to feed an ONNX model and read its output.

See ``shared/specs/model-card.md``. The card travels inside the ``.onnx`` file
(metadata key ``soundbatch.card``) or in a sidecar ``<model>.onnx.card.json``.
It is parsed into frozen pydantic models and checked against the graph's
inputs and outputs before any audio is read.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from soundbatch.errors import ModelCardError

CARD_KEY = "soundbatch.card"
SIDECAR_SUFFIX = ".card.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogMelFeatures(_Frozen):
    """Parameters with the meaning they have in ``librosa.feature.melspectrogram``."""

    kind: Literal["logmel"] = "logmel"
    sample_rate: int = Field(gt=0)
    n_fft: int = Field(gt=0)
    win_length: int | None = None
    hop_length: int = Field(gt=0)
    window: Literal["hann"] = "hann"
    center: bool = False
    n_mels: int = Field(gt=0)
    fmin: float = Field(default=0.0, ge=0.0)
    fmax: float | None = None
    htk: bool = False
    mel_norm: Literal["slaney"] | None = "slaney"
    power: float = Field(default=2.0, gt=0.0)
    log: Literal["log", "db"] = "log"
    log_eps: float = Field(default=1e-9, gt=0.0)
    normalize: Literal["window", "none"] = "window"

    @model_validator(mode="after")
    def _check(self) -> "LogMelFeatures":
        win = self.win_length if self.win_length is not None else self.n_fft
        if win > self.n_fft:
            raise ValueError(f"features.win_length={win} must be <= features.n_fft={self.n_fft}")
        fmax = self.fmax if self.fmax is not None else self.sample_rate / 2
        if not self.fmin < fmax <= self.sample_rate / 2:
            raise ValueError(
                f"features.fmin={self.fmin}, fmax={fmax} must satisfy "
                f"fmin < fmax <= sample_rate/2={self.sample_rate / 2}"
            )
        return self

    @property
    def effective_win_length(self) -> int:
        return self.win_length if self.win_length is not None else self.n_fft

    @property
    def effective_fmax(self) -> float:
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2.0


class WaveformFeatures(_Frozen):
    """Models that compute their own features in the graph: they take raw audio."""

    kind: Literal["waveform"] = "waveform"
    sample_rate: int = Field(gt=0)


Features = Annotated[Union[LogMelFeatures, WaveformFeatures], Field(discriminator="kind")]


class FrameWindow(_Frozen):
    """Analysis window in feature frames (logmel models)."""

    frames: int = Field(gt=0)
    hop_frames: int = Field(gt=0)


class SampleWindow(_Frozen):
    """Analysis window in samples (waveform models)."""

    samples: int = Field(gt=0)
    hop_samples: int = Field(gt=0)


class InputSpec(_Frozen):
    name: str | None = None
    layout: Literal["NCHW", "NHWC", "NHW", "NT", "NCT"]


class OutputSpec(_Frozen):
    name: str | None = None
    activation: Literal["softmax", "sigmoid", "logits"]
    apply: Literal["softmax", "sigmoid"] | None = None

    @model_validator(mode="after")
    def _check(self) -> "OutputSpec":
        if self.activation == "logits" and self.apply is None:
            raise ValueError('output.activation="logits" needs output.apply: "softmax" or "sigmoid"')
        if self.activation != "logits" and self.apply is not None:
            raise ValueError(f'output.apply is only for activation="logits", not "{self.activation}"')
        return self

    @property
    def kind(self) -> Literal["softmax", "sigmoid"]:
        """How the probabilities behave: one class per window, or one probability per class."""
        return self.apply if self.activation == "logits" else self.activation  # type: ignore[return-value]


class Defaults(_Frozen):
    rms_gate_dbfs: float = Field(default=-60.0, le=0.0)
    ood_threshold: float | dict[str, float] = 0.5

    @field_validator("ood_threshold")
    @classmethod
    def _probability(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        for v in value.values() if isinstance(value, dict) else [value]:
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{v} is not a probability between 0 and 1")
        return value


class ModelCard(_Frozen):
    name: str
    version: str
    description: str | None = None
    classes: list[str] = Field(min_length=1)
    background_classes: list[str] = []
    output: OutputSpec
    input: InputSpec
    features: Features
    window: FrameWindow | SampleWindow
    defaults: Defaults = Defaults()

    @model_validator(mode="after")
    def _check(self) -> "ModelCard":
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes has duplicates: {self.classes}")
        reserved = {"silence", "unknown"} & set(self.classes)
        if reserved:
            raise ValueError(f"classes must not use the reserved labels {sorted(reserved)}")
        missing = set(self.background_classes) - set(self.classes)
        if missing:
            raise ValueError(f"background_classes {sorted(missing)} are not in classes")
        logmel = isinstance(self.features, LogMelFeatures)
        if logmel and not isinstance(self.window, FrameWindow):
            raise ValueError("features.kind=logmel needs window.frames and window.hop_frames")
        if not logmel and not isinstance(self.window, SampleWindow):
            raise ValueError("features.kind=waveform needs window.samples and window.hop_samples")
        layouts = {"NCHW", "NHWC", "NHW"} if logmel else {"NT", "NCT"}
        if self.input.layout not in layouts:
            raise ValueError(
                f"input.layout={self.input.layout} does not fit features.kind="
                f"{self.features.kind}; expected one of {sorted(layouts)}"
            )
        if isinstance(self.defaults.ood_threshold, dict):
            unknown = set(self.defaults.ood_threshold) - set(self.classes)
            if unknown:
                raise ValueError(f"defaults.ood_threshold names unknown classes {sorted(unknown)}")
        return self

    # --- derived geometry -------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def hop_samples(self) -> int:
        """Samples (at the model rate) between the starts of consecutive windows."""
        if isinstance(self.window, FrameWindow):
            return self.window.hop_frames * self.features.hop_length  # type: ignore[union-attr]
        return self.window.hop_samples

    @property
    def window_samples(self) -> int:
        """Nominal length of one window in samples: ``frames * hop_length`` or ``samples``."""
        if isinstance(self.window, FrameWindow):
            return self.window.frames * self.features.hop_length  # type: ignore[union-attr]
        return self.window.samples

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def window_shape(self) -> tuple[int, ...]:
        """One window as soundbatch computes it: ``(n_mels, frames)`` or ``(samples,)``."""
        if isinstance(self.window, FrameWindow):
            return (self.features.n_mels, self.window.frames)  # type: ignore[union-attr]
        return (self.window.samples,)

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window as the graph takes it, batch dimension excluded."""
        w = self.window
        if isinstance(w, FrameWindow):
            n_mels = self.features.n_mels  # type: ignore[union-attr]
            return {
                "NCHW": (1, n_mels, w.frames),
                "NHWC": (n_mels, w.frames, 1),
                "NHW": (n_mels, w.frames),
            }[self.input.layout]
        return {"NT": (w.samples,), "NCT": (1, w.samples)}[self.input.layout]

    def thresholds(self, override: float | dict[str, float] | None = None) -> "list[float]":
        """Per-class out-of-domain thresholds, in ``classes`` order.

        A run's per-class map overrides the card's values class by class; a class
        it does not name keeps the card's value.
        """
        default = self.defaults.ood_threshold
        base = dict(default) if isinstance(default, dict) else {}
        fallback = default if isinstance(default, float) else 0.5
        if isinstance(override, dict):
            unknown = set(override) - set(self.classes)
            if unknown:
                raise ModelCardError(
                    f"ood_threshold names classes {sorted(unknown)} that the model does not have; "
                    f"its classes are {self.classes}"
                )
            base.update(override)
        elif override is not None:
            return [float(override)] * len(self.classes)
        return [float(base.get(c, fallback)) for c in self.classes]


def parse_card(text: str | bytes, *, source: str = "card") -> ModelCard:
    """Parse and validate card JSON; errors name the field and the value."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"{source}: the card is not valid JSON: {exc}") from exc
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'card'}: {err['msg']}"
            + (f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else "")
            for err in exc.errors()
        )
        raise ModelCardError(f"{source}: invalid model card: {problems}") from exc


def card_to_json(card: ModelCard) -> str:
    return json.dumps(card.model_dump(mode="json", exclude_none=True), indent=2)


def check_card_against_graph(
    card: ModelCard,
    inputs: list[tuple[str, list]],
    outputs: list[tuple[str, list]],
    *,
    source: str = "model",
) -> tuple[str, str]:
    """Check the card against the graph's (name, shape) inputs and outputs.

    Returns the input and output names to use. Dimensions that are symbolic or
    unknown in the graph (strings, None, -1) are accepted; fixed ones must match.
    """
    input_name = _pick(card.input.name, inputs, "input.name", source)
    output_name = _pick(card.output.name, outputs, "output.name", source)
    in_shape = dict(inputs)[input_name]
    expected = card.input_shape()
    if len(in_shape) != len(expected) + 1:
        raise ModelCardError(
            f"{source}: input.layout={card.input.layout} means rank {len(expected) + 1} "
            f"(batch + {list(expected)}), but graph input {input_name!r} has rank "
            f"{len(in_shape)} (shape {in_shape})"
        )
    fields = _axis_fields(card.input.layout)
    for axis, (got, want) in enumerate(zip(in_shape[1:], expected), start=1):
        if isinstance(got, int) and got > 0 and got != want:
            raise ModelCardError(
                f"{source}: card {fields[axis - 1]}={want}, but graph input {input_name!r} axis "
                f"{axis} is {got}; full shapes: graph {in_shape}, card layout {card.input.layout} "
                f"means [N, {', '.join(map(str, expected))}]"
            )
    out_shape = dict(outputs)[output_name]
    n_out = out_shape[-1] if out_shape else None
    if len(out_shape) != 2:
        raise ModelCardError(
            f"{source}: graph output {output_name!r} must be [N, n_classes], got shape {out_shape}"
        )
    if isinstance(n_out, int) and n_out > 0 and n_out != len(card.classes):
        raise ModelCardError(
            f"{source}: card lists {len(card.classes)} classes, but graph output "
            f"{output_name!r} has {n_out}"
        )
    return input_name, output_name


def _axis_fields(layout: str) -> list[str]:
    """The card field that sets each non-batch input axis, in the layout's order."""
    channel = "channels (always 1)"
    return {
        "NCHW": [channel, "features.n_mels", "window.frames"],
        "NHWC": ["features.n_mels", "window.frames", channel],
        "NHW": ["features.n_mels", "window.frames"],
        "NT": ["window.samples"],
        "NCT": [channel, "window.samples"],
    }[layout]


def _pick(name: str | None, tensors: list[tuple[str, list]], field: str, source: str) -> str:
    names = [n for n, _ in tensors]
    if name is None:
        if len(names) != 1:
            raise ModelCardError(f"{source}: graph has tensors {names}; set {field} in the card")
        return names[0]
    if name not in names:
        raise ModelCardError(f"{source}: card {field}={name!r}, but the graph has {names}")
    return name
