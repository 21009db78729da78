"""Synthetic recordings and archives with known truth (tests, demos, benchmarks).

Levels are RMS in dBFS with full scale = 1.0: ``20*log10(rms)``. A full-scale
sine is therefore about -3 dBFS.

Truth labels of :func:`make_archive` are the class names of the tests'
band-energy model:

- ``"low"``: tones, chirps and band-limited noise entirely within 200-700 Hz;
- ``"high"``: the same within 3-6 kHz.

The gaps between events hold only the background (white noise at
``noise_dbfs``, by default -70 dBFS, below a -60 dBFS silence gate), so an RMS
gate at -60 dBFS labels them ``silence``; they are not rows of the truth table.

The module is built to grow (more kinds, scenes, reverberation): a kind is one
entry in ``_RENDERERS``; archives draw events through ``random_events``.
"""

from __future__ import annotations

import io
import math
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from soundbatch import storage

__all__ = [
    "BANDS_HZ",
    "KINDS",
    "SynthEvent",
    "TRUTH_SCHEMA",
    "make_archive",
    "random_events",
    "render",
    "write_recording",
]

#: Frequency band (Hz) of each truth label.
BANDS_HZ: dict[str, tuple[float, float]] = {"low": (200.0, 700.0), "high": (3000.0, 6000.0)}
#: Event kinds :func:`render` knows.
KINDS: frozenset[str] = frozenset({"tone", "chirp", "noise", "silence"})
#: Columns of ``truth.parquet``.
TRUTH_SCHEMA = pa.schema(
    [
        ("recording", pa.string()),
        ("sensor", pa.string()),
        ("onset_s", pa.float64()),
        ("offset_s", pa.float64()),
        ("label", pa.string()),
    ]
)

_FADE_S = 0.005  # raised-cosine ramps: clicks would spread energy over every band

# soundfile format and subtype by extension.
_FORMATS: dict[str, tuple[str, str | None]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
    ".aif": ("AIFF", "PCM_16"),
    ".aiff": ("AIFF", "PCM_16"),
}


@dataclass(frozen=True)
class SynthEvent:
    """One sound in a synthetic recording.

    Attributes
    ----------
    onset_s, offset_s : float
        Span in seconds from the recording's start; ``offset_s > onset_s``.
        Parts past the end of the recording are cut off.
    kind : str
        ``"tone"`` (sine at ``freq_hz``), ``"chirp"`` (linear sweep from
        ``freq_hz`` to ``freq_end_hz``), ``"noise"`` (white noise band-limited
        to ``[freq_hz, freq_end_hz]``, or one octave centred on ``freq_hz``
        when ``freq_end_hz`` is None) or ``"silence"`` (nothing added: the
        background stays).
    freq_hz : float
        Frequency, sweep start or band edge, in Hz.
    level_dbfs : float
        RMS level of the event in dBFS.
    freq_end_hz : float or None
        Sweep end (chirp) or upper band edge (noise).
    label : str or None
        Truth label, for archives; :func:`render` ignores it.
    """

    onset_s: float
    offset_s: float
    kind: str
    freq_hz: float = 1000.0
    level_dbfs: float = -20.0
    freq_end_hz: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not a synth event kind; expected one of {sorted(KINDS)}")
        if not (math.isfinite(self.onset_s) and math.isfinite(self.offset_s)) or self.onset_s < 0:
            raise ValueError(f"onset_s={self.onset_s!r} must be a finite number >= 0 (offset_s={self.offset_s!r})")
        if self.offset_s <= self.onset_s:
            raise ValueError(f"offset_s={self.offset_s!r} must be greater than onset_s={self.onset_s!r}")
        if self.freq_hz <= 0:
            raise ValueError(f"freq_hz={self.freq_hz!r} must be positive")


def _tone(ev: SynthEvent, t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    phase = rng.uniform(0, 2 * np.pi)
    return np.sqrt(2.0) * np.sin(2 * np.pi * ev.freq_hz * t + phase)


def _chirp(ev: SynthEvent, t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    f1 = ev.freq_end_hz if ev.freq_end_hz is not None else ev.freq_hz * 2
    span = max(t[-1], 1.0 / sr) if len(t) else 1.0
    k = (f1 - ev.freq_hz) / span
    return np.sqrt(2.0) * np.sin(2 * np.pi * (ev.freq_hz * t + 0.5 * k * t * t))


def _noise(ev: SynthEvent, t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = (
        (ev.freq_hz, ev.freq_end_hz)
        if ev.freq_end_hz is not None
        else (ev.freq_hz / math.sqrt(2), ev.freq_hz * math.sqrt(2))
    )
    n = len(t)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0
    x = np.fft.irfft(spec, n)
    rms = np.sqrt(np.mean(x * x)) if n else 0.0
    return x / rms if rms > 0 else x


_RENDERERS: dict[str, Callable[[SynthEvent, np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "tone": _tone,
    "chirp": _chirp,
    "noise": _noise,
}


def _db_to_amp(dbfs: float) -> float:
    return float(10.0 ** (dbfs / 20.0))


def render(
    events: list[SynthEvent] | tuple[SynthEvent, ...],
    *,
    duration_s: float,
    sample_rate: int,
    seed: int,
    noise_dbfs: float | None = -70.0,
) -> np.ndarray:
    """Render events over a quiet background.

    Parameters
    ----------
    events : sequence of SynthEvent
        Sounds to add; overlapping ones are summed.
    duration_s : float
        Length of the recording in seconds.
    sample_rate : int
        Samples per second.
    seed : int
        Seed of the random parts (noise, phases); equal seeds give equal audio.
    noise_dbfs : float or None
        RMS level of the white background noise in dBFS; None for digital silence.
        The default, -70, is below a -60 dBFS silence gate.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(round(duration_s * sample_rate),)``, clipped to [-1, 1].
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r} must be a positive integer")
    if duration_s < 0 or not math.isfinite(duration_s):
        raise ValueError(f"duration_s={duration_s!r} must be a finite number >= 0")
    n = int(round(duration_s * sample_rate))
    rng = np.random.default_rng(seed)
    if noise_dbfs is None:
        out = np.zeros(n, dtype=np.float64)
    else:
        out = rng.standard_normal(n) * _db_to_amp(noise_dbfs)
    fade = max(1, int(_FADE_S * sample_rate))
    for ev in events:
        if ev.kind == "silence":
            continue
        i0 = int(round(ev.onset_s * sample_rate))
        i1 = min(int(round(ev.offset_s * sample_rate)), n)
        if i0 >= i1:
            continue
        t = np.arange(i1 - i0, dtype=np.float64) / sample_rate
        x = _RENDERERS[ev.kind](ev, t, sample_rate, rng) * _db_to_amp(ev.level_dbfs)
        f = min(fade, len(x) // 2)
        if f > 0:
            ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, f))
            x[:f] *= ramp
            x[len(x) - f :] *= ramp[::-1]
        out[i0:i1] += x
    np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32)


def write_recording(
    uri: str,
    audio: np.ndarray,
    sample_rate: int,
    *,
    format: str | None = None,
    subtype: str | None = None,
) -> None:
    """Encode audio with soundfile and write it to a local path or S3.

    Parameters
    ----------
    uri : str
        Destination; the extension picks the format (``.wav .flac .ogg .oga
        .opus .mp3 .aif .aiff``) unless ``format`` is given.
    audio : numpy.ndarray
        Float samples in [-1, 1], shape ``(n,)`` or ``(n, channels)``.
    sample_rate : int
        Samples per second.
    format, subtype : str, optional
        soundfile format (``"WAV"``, ``"FLAC"``, ...) and subtype (``"PCM_16"``, ``"FLOAT"``, ...).
    """
    ext = posixpath.splitext(uri.rsplit("/", 1)[-1])[1].lower()
    default_format, default_subtype = _FORMATS.get(ext, (None, None))
    fmt = format or default_format
    if fmt is None:
        raise ValueError(f"cannot tell the audio format of {uri!r}: expected one of {sorted(_FORMATS)} or format=")
    if subtype is None and format is None:
        subtype = default_subtype
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format=fmt, subtype=subtype)
    storage.write_bytes(uri, buf.getvalue())


def random_events(
    rng: np.random.Generator,
    duration_s: float,
    *,
    min_event_s: float = 0.5,
    max_event_s: float = 4.0,
    min_gap_s: float = 1.5,
    max_gap_s: float = 10.0,
    level_dbfs: tuple[float, float] = (-32.0, -18.0),
) -> list[SynthEvent]:
    """Draw a sequence of labelled events separated by background-only gaps.

    Each event is a tone, chirp or band-limited noise wholly inside the band of
    its label (``BANDS_HZ``), with ``min_gap_s`` or more between events so that
    windowed detection keeps them apart.
    """
    events: list[SynthEvent] = []
    t = float(rng.uniform(0.5, max_gap_s))
    margin = 0.1  # keep every spectral component inside the band, ramps included
    while True:
        length = float(rng.uniform(min_event_s, max_event_s))
        if t + length > duration_s - 0.25:
            break
        label = "low" if rng.random() < 0.5 else "high"
        lo, hi = BANDS_HZ[label]
        lo, hi = lo * (1 + margin), hi * (1 - margin)
        kind = ("tone", "chirp", "noise")[int(rng.integers(3))]
        level = float(rng.uniform(*level_dbfs))
        if kind == "tone":
            ev = SynthEvent(t, t + length, "tone", freq_hz=float(rng.uniform(lo, hi)), level_dbfs=level, label=label)
        elif kind == "chirp":
            f0, f1 = sorted(rng.uniform(lo, hi, size=2))
            ev = SynthEvent(t, t + length, "chirp", freq_hz=float(f0), freq_end_hz=float(f1), level_dbfs=level, label=label)
        else:
            ev = SynthEvent(t, t + length, "noise", freq_hz=lo, freq_end_hz=hi, level_dbfs=level, label=label)
        events.append(ev)
        t += length + float(rng.uniform(min_gap_s, max_gap_s))
    return events


def _parse_start(start: str | datetime) -> datetime:
    t = start if isinstance(start, datetime) else datetime.fromisoformat(start)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def make_archive(
    out_uri: str,
    *,
    sensors: int = 3,
    hours: float = 0.5,
    file_minutes: float = 10,
    sample_rate: int = 44100,
    seed: int = 0,
    start: str | datetime = "2026-11-23T00:00:00",
    extension: str = ".flac",
    noise_dbfs: float | None = -70.0,
) -> pa.Table:
    """Write a synthetic multi-sensor archive with known truth.

    Layout::

        OUT/S01/20261123_000000.flac      AudioMoth naming, one folder per sensor
        OUT/S01/20261123_000000.txt       Audacity label track: start<TAB>end<TAB>label
        OUT/truth.parquet                 every event of every file

    Parameters
    ----------
    out_uri : str
        Local folder or ``s3://bucket/prefix``.
    sensors : int
        Number of sensors, named ``S01``, ``S02``, ...
    hours : float
        Recorded time per sensor; the last file is shorter when
        ``hours * 60`` is not a multiple of ``file_minutes``.
    file_minutes : float
        Length of each file in minutes.
    sample_rate : int
        Samples per second of the files.
    seed : int
        Seed; equal arguments give byte-equal archives.
    start : str or datetime
        UTC start of the first file of every sensor (ISO 8601; naive is UTC).
    extension : str
        Audio file extension (format), ``.flac`` by default.
    noise_dbfs : float or None
        Background level, see :func:`render`.

    Returns
    -------
    pyarrow.Table
        The truth (``TRUTH_SCHEMA``): recording (full URI as :func:`storage.list_inputs`
        returns it), sensor, onset_s, offset_s (seconds from the file's start),
        label (``"low"`` or ``"high"``), sorted by recording and onset.
    """
    if sensors < 1 or hours <= 0 or file_minutes <= 0:
        raise ValueError(
            f"sensors={sensors!r}, hours={hours!r}, file_minutes={file_minutes!r} must be positive"
        )
    if not storage.is_s3(out_uri):
        out_uri = storage.normalize_uri(out_uri)
    t0 = _parse_start(start)
    total_s = hours * 3600.0
    file_s = file_minutes * 60.0
    n_files = max(1, math.ceil(total_s / file_s - 1e-9))
    seeds = np.random.SeedSequence(seed).spawn(sensors * n_files)
    rows: list[dict] = []
    for si in range(sensors):
        sensor = f"S{si + 1:02d}"
        for fi in range(n_files):
            duration = min(file_s, total_s - fi * file_s)
            ss = seeds[si * n_files + fi]
            rng = np.random.default_rng(ss)
            events = random_events(rng, duration)
            audio = render(
                events,
                duration_s=duration,
                sample_rate=sample_rate,
                seed=int(ss.generate_state(1)[0]),
                noise_dbfs=noise_dbfs,
            )
            stem = (t0 + timedelta(seconds=fi * file_s)).strftime("%Y%m%d_%H%M%S")
            uri = storage.join(out_uri, sensor, stem + extension)
            write_recording(uri, audio, sample_rate)
            labels = "".join(f"{e.onset_s:.6f}\t{e.offset_s:.6f}\t{e.label}\n" for e in events)
            storage.write_bytes(storage.join(out_uri, sensor, stem + ".txt"), labels.encode())
            rows.extend(
                {"recording": uri, "sensor": sensor, "onset_s": e.onset_s, "offset_s": e.offset_s, "label": e.label}
                for e in events
            )
    rows.sort(key=lambda r: (r["recording"], r["onset_s"]))
    table = pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(storage.join(out_uri, "truth.parquet"), buf.getvalue())
    return table
