"""Decode one segment of a recording into feature windows at the model rate.

``read_windows`` seeks to the segment, reads only its source frames plus a
little resampling context, mixes to mono, resamples with soxr, and hands the
model-rate audio to :mod:`soundbatch.features`.

Segment invariance. The windows of a recording are the same whether read in
one call or in many segments. That holds because every call resamples a chunk
whose first source frame is a multiple of ``sr_in / gcd(sr_in, sr_out)``: such
a frame falls exactly on a model-rate sample, so the polyphase filter sees the
same phases as it does for the whole file. The chunk carries
``RESAMPLE_CONTEXT`` samples (at the lower of the two rates) of real audio on
both sides of what the windows need, so the filter's edge transients fall
outside the part that is kept. At the recording's edges every path sees the
same thing: no data before frame 0 or after the last frame; zeros at the model
rate outside ``[0, model_rate_samples)``; and for ``center=True`` the
``n_fft // 2`` lead before sample 0 is zeros (librosa's ``pad_mode="constant"``).

Resampler: soxr quality ``"VHQ"``. It filters in double precision, which makes
chunked output bit-identical to whole-file output for rational ratios (with
``"HQ"``, single precision, chunks differ from the whole by ~1e-7). It costs
about 1.3x the time of ``"HQ"`` and differs from ``librosa.load``'s default
``soxr_hq`` by less than -120 dB, far below anything a model can see.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from soundbatch.card import ModelCard
from soundbatch.errors import AudioDecodeError
from soundbatch.features import segment_features
from soundbatch.grid import WindowGrid

#: Resampling context on each side of a chunk, in samples at the lower of the
#: source and model rates. soxr VHQ settles within ~256 of them (measured for
#: 2x up/down, 6x down and non-integer ratios); 4x that is a safe margin and
#: costs ~2 x 46 ms of extra decode per segment at 44.1 -> 22.05 kHz.
RESAMPLE_CONTEXT = 1024

#: Seconds of MP3 decoded and dropped before each chunk (see ``_read``).
MP3_PREROLL_S = 1

#: soxr quality recipe (see the module docstring).
RESAMPLE_QUALITY = "VHQ"

# Subtypes that decode to integers scaled into [-1, 1): they cannot carry NaN,
# Inf or samples beyond full scale, so the checks are skipped for them.
_INTEGER_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM",
     "GSM610", "DWVW_12", "DWVW_16", "DWVW_24", "G721_32", "G723_24", "G723_40", "DPCM_8", "DPCM_16",
     "ALAC_16", "ALAC_20", "ALAC_24", "ALAC_32", "NMS_ADPCM_16", "NMS_ADPCM_24", "NMS_ADPCM_32"}
)


@dataclass(frozen=True)
class AudioInfo:
    """What ``probe`` learns from a file's header.

    Attributes
    ----------
    frames : int
        Frames (samples per channel) libsndfile reports; a truncated WAV
        reports what is there, MP3 an estimate.
    sample_rate : int
        Source rate in Hz.
    channels : int
        Number of channels.
    format, subtype : str
        libsndfile's names, e.g. ``"WAV"``/``"PCM_16"``, ``"FLAC"``/``"PCM_24"``.
    duration_s : float
        ``frames / sample_rate``.
    """

    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str
    duration_s: float


@dataclass
class SegmentWindows:
    """The windows ``[w0, w1)`` of one recording.

    Attributes
    ----------
    features : np.ndarray
        float32 ``(n, n_mels, frames)`` for logmel, ``(n, samples)`` for waveform.
    rms_dbfs : np.ndarray
        float32 ``(n,)``: RMS of each window's nominal span, dBFS, floor -200.
    frames_decoded : int
        Source frames actually decoded in this segment's own span. The own
        spans of a recording's segments tile ``[0, info.frames)``, so their sum
        equals ``info.frames`` unless the file is shorter than its header says.
    warnings : list[str]
        Problems found and repaired in this segment's own span.
    """

    features: np.ndarray
    rms_dbfs: np.ndarray
    frames_decoded: int
    warnings: list[str] = field(default_factory=list)


def _name(fileobj: BinaryIO) -> str:
    return str(getattr(fileobj, "name", None) or "<file object>")


def _open(fileobj: BinaryIO) -> sf.SoundFile:
    """Open ``fileobj`` with libsndfile from its first byte; AudioDecodeError on failure."""
    name = _name(fileobj)
    try:
        fileobj.seek(0, 2)
        size = fileobj.tell()
        fileobj.seek(0)
    except (OSError, ValueError) as exc:
        raise AudioDecodeError(f"{name}: cannot seek in the input ({exc}); a seekable file is needed") from exc
    if size == 0:
        raise AudioDecodeError(f"{name}: the file is empty (0 bytes)")
    try:
        return sf.SoundFile(fileobj)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(
            f"{name}: not a readable audio file ({size} bytes; libsndfile says: {exc}). "
            "Supported: WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF and the other libsndfile formats"
        ) from exc


def probe(fileobj: BinaryIO) -> AudioInfo:
    """Read a file's header.

    Parameters
    ----------
    fileobj : BinaryIO
        Opened, seekable binary file object (a local file or a buffered S3 stream).

    Returns
    -------
    AudioInfo

    Raises
    ------
    AudioDecodeError
        Empty file, not audio, or a header with 0 Hz or 0 channels.
    """
    name = _name(fileobj)
    with _open(fileobj) as snd:
        info = AudioInfo(
            frames=int(snd.frames),
            sample_rate=int(snd.samplerate),
            channels=int(snd.channels),
            format=str(snd.format),
            subtype=str(snd.subtype),
            duration_s=(snd.frames / snd.samplerate) if snd.samplerate > 0 else 0.0,
        )
    if info.sample_rate <= 0:
        raise AudioDecodeError(f"{name}: the header says sample_rate={info.sample_rate} Hz; it must be > 0")
    if info.channels <= 0:
        raise AudioDecodeError(f"{name}: the header says channels={info.channels}; it must be >= 1")
    if info.frames < 0:
        raise AudioDecodeError(f"{name}: the header says frames={info.frames}; it must be >= 0")
    return info


def wav_declared_frames(fileobj: BinaryIO, info: AudioInfo) -> int | None:
    """Frames a RIFF/WAVE header's ``data`` chunk declares, or None if not a plain WAV.

    libsndfile silently returns the frames that are there when a WAV is cut
    short (stack notes), so a truncated file is only seen by comparing with the
    header. Streaming headers (size 0 or 0xFFFFFFFF) declare nothing.
    """
    fileobj.seek(0)
    head = fileobj.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align, data_size = 12, None, None
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(head):
            block_align = int.from_bytes(head[pos + 20:pos + 22], "little")
        elif chunk == b"data":
            data_size = size
            break
        pos += 8 + size + (size & 1)
    if not block_align or data_size in (None, 0, 0xFFFFFFFF):
        return None
    return data_size // block_align


def model_rate_samples(info: AudioInfo, model_rate: int) -> int:
    """Samples of the recording at ``model_rate``: ``ceil(frames * model_rate / sample_rate)``.

    The same count ``librosa.resample`` gives; model samples past it are zeros.
    """
    return -(-info.frames * model_rate // info.sample_rate)


_local = threading.local()


def _read_buffer(n: int, channels: int) -> np.ndarray:
    """A per-thread float32 ``(>= n, channels)`` buffer, reused across calls (page faults are slow here)."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.shape[1] != channels or buf.shape[0] < n:
        buf = np.empty((max(n, 1), channels), dtype=np.float32)
        _local.buf = buf
    return buf[:n]


def read_windows(fileobj: BinaryIO, info: AudioInfo, card: ModelCard, w0: int, w1: int) -> SegmentWindows:
    """Decode windows ``[w0, w1)`` of a recording and compute their features.

    Reads only source frames ``[own span] U [what the windows read +/- RESAMPLE_CONTEXT]``,
    never the whole file.

    Parameters
    ----------
    fileobj : BinaryIO
        Opened, seekable binary file object.
    info : AudioInfo
        From :func:`probe` on the same file.
    card : ModelCard
        The model card: rate, features, window geometry.
    w0, w1 : int
        Window range, ``0 <= w0 <= w1 <= WindowGrid.n_windows(model_rate_samples(info))``.

    Returns
    -------
    SegmentWindows

    Raises
    ------
    AudioDecodeError
        The file cannot be opened, or seeking or decoding fails (a corrupt
        FLAC loses sync, say). A file shorter than its header is not an error:
        ``frames_decoded`` comes out short and the missing audio reads as zeros.
    """
    grid = WindowGrid.from_card(card)
    sr_in, sr_out = info.sample_rate, grid.sample_rate
    n_out = model_rate_samples(info, sr_out)
    n_total = grid.n_windows(n_out)
    if not 0 <= w0 <= w1 <= n_total:
        raise ValueError(f"window range [w0={w0}, w1={w1}) must lie in [0, {n_total}] for this recording")
    n = w1 - w0
    if n == 0:
        empty = segment_features(np.zeros(0, np.float32), card, 0, lead=-grid.read_offset)
        return SegmentWindows(features=empty[0], rms_dbfs=empty[1], frames_decoded=0, warnings=[])

    # Model-rate span [a, b) the windows read: STFT frames and the nominal
    # spans (which the RMS uses) together.
    a, b = grid.read_span(w0, w1)
    a = min(a, w0 * grid.hop_samples)
    b = max(b, (w1 - 1) * grid.hop_samples + grid.window_samples)
    ma, mb = max(a, 0), min(b, n_out)  # the part with recording data

    # This segment's own span in source frames. Model sample m maps to source
    # frame ceil(m * sr_in / sr_out); the last segment runs to the end, so the
    # own spans of consecutive segments tile [0, info.frames).
    own_s0 = -(-w0 * grid.hop_samples * sr_in // sr_out)
    own_s1 = info.frames if w1 == n_total else min(-(-w1 * grid.hop_samples * sr_in // sr_out), info.frames)
    own_s0 = min(own_s0, own_s1)

    g = math.gcd(sr_in, sr_out)
    step_in, step_out = sr_in // g, sr_out // g  # source step <-> model step, exactly aligned
    if sr_in == sr_out:
        src0, src1 = ma, mb
    else:
        ctx = -(-RESAMPLE_CONTEXT * sr_out // min(sr_in, sr_out))  # in model samples
        k0 = max(0, (ma - ctx) // step_out)
        k1 = -(-(mb + ctx) // step_out)
        src0, src1 = k0 * step_in, min(k1 * step_in, info.frames)
    if own_s1 > own_s0:
        src0 = min(src0, (own_s0 // step_in) * step_in)  # stays aligned
        src1 = max(src1, own_s1)
    src1 = min(src1, info.frames)
    src0 = min(src0, src1)

    data, warnings = _read(fileobj, info, src0, src1, own_s0, own_s1)
    got = data.shape[0]
    frames_decoded = max(0, min(own_s1, src0 + got) - own_s0)

    mono = _mix_to_mono(data)
    if sr_in != sr_out and mono.shape[0]:
        mono = soxr.resample(mono, sr_in, sr_out, quality=RESAMPLE_QUALITY)
    chunk_m0 = (src0 // step_in) * step_out if sr_in != sr_out else src0  # model sample of mono[0]

    # Place the chunk into the span [a, b); everything else is zeros.
    y = np.zeros(b - a, dtype=np.float32)
    lo = max(ma, chunk_m0)
    hi = min(mb, chunk_m0 + mono.shape[0])
    if hi > lo:
        y[lo - a : hi - a] = mono[lo - chunk_m0 : hi - chunk_m0]

    features, rms = segment_features(y, card, n, lead=w0 * grid.hop_samples - a)
    return SegmentWindows(features=features, rms_dbfs=rms, frames_decoded=frames_decoded, warnings=warnings)


def _read(
    fileobj: BinaryIO, info: AudioInfo, src0: int, src1: int, own_s0: int, own_s1: int
) -> tuple[np.ndarray, list[str]]:
    """Source frames ``[src0, src1)`` as float32 ``(got, channels)``, repaired; ``got`` may be short."""
    name = _name(fileobj)
    warnings: list[str] = []
    if src1 <= src0:
        return np.zeros((0, info.channels), dtype=np.float32), warnings
    with _open(fileobj) as snd:
        if snd.channels != info.channels or snd.samplerate != info.sample_rate:
            raise AudioDecodeError(
                f"{name}: the file changed since it was probed (now {snd.channels} ch at "
                f"{snd.samplerate} Hz, was {info.channels} ch at {info.sample_rate} Hz)"
            )
        # MP3 decodes wrongly for up to ~0.5 s after a seek (mpg123 lacks the
        # bit reservoir of the frames before it; measured 0.14-0.50 s at
        # 8-48 kHz): decode a pre-roll before the chunk and drop it.
        preroll = min(src0, info.sample_rate * MP3_PREROLL_S) if info.format == "MP3" else 0
        buf = _read_buffer(src1 - src0 + preroll, info.channels)
        try:
            if src0 - preroll:
                snd.seek(src0 - preroll)
            data = snd.read(src1 - src0 + preroll, dtype="float32", always_2d=True, out=buf)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioDecodeError(
                f"{name}: decoding frames {src0}..{src1} of {info.frames} failed ({exc}); "
                "the file is probably truncated or corrupt"
            ) from exc
        data = data[preroll:]
    if info.subtype not in _INTEGER_SUBTYPES and data.size:
        # Count only this segment's own span, so a recording's warnings add up
        # over its segments without double counting the shared context.
        own = data[max(0, own_s0 - src0) : max(0, own_s1 - src0)]
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(own.size - np.count_nonzero(np.isfinite(own)))
            np.copyto(data, 0.0, where=~finite)
            if n_bad:
                warnings.append(f"replaced {n_bad} non-finite (NaN/Inf) samples with 0")
        n_loud = int(np.count_nonzero(np.abs(own) > 1.0))
        if n_loud:
            warnings.append(f"{n_loud} samples beyond full scale (|x| > 1.0), kept as they are")
    return data, warnings


def _mix_to_mono(data: np.ndarray) -> np.ndarray:
    """Mean over channels: float32 ``(n, channels)`` -> contiguous float32 ``(n,)``."""
    channels = data.shape[1]
    mono = np.array(data[:, 0], dtype=np.float32)  # copy: data is a reused buffer
    for c in range(1, channels):
        mono += data[:, c]
    if channels > 1:
        mono *= np.float32(1.0 / channels)
    return mono
