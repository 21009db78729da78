"""WindowGrid: geometry of windows and segments at the model rate."""

from __future__ import annotations

import numpy as np
import pytest

from soundbatch.card import ModelCard
from soundbatch.grid import WindowGrid


def _card(features: dict, window: dict, layout: str = "NCHW") -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "t",
            "version": "1",
            "classes": ["a", "b"],
            "output": {"activation": "softmax"},
            "input": {"layout": layout},
            "features": features,
            "window": window,
        }
    )


@pytest.mark.parametrize(
    ("center", "read_offset"),
    [(False, 0), (True, -512)],
)
def test_from_card_logmel(center: bool, read_offset: int) -> None:
    card = _card(
        {"kind": "logmel", "sample_rate": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": 64, "center": center},
        {"frames": 44, "hop_frames": 22},
    )
    grid = WindowGrid.from_card(card)
    assert grid == WindowGrid(
        sample_rate=22050,
        hop_samples=22 * 512,
        window_samples=44 * 512,
        read_offset=read_offset,
        read_samples=43 * 512 + 1024,
    )
    assert grid.hop_samples == card.hop_samples and grid.window_samples == card.window_samples


def test_from_card_waveform() -> None:
    card = _card(
        {"kind": "waveform", "sample_rate": 16000}, {"samples": 15600, "hop_samples": 7800}, layout="NT"
    )
    assert WindowGrid.from_card(card) == WindowGrid(16000, 7800, 15600, 0, 15600)


@pytest.mark.parametrize(
    ("n_samples", "expected"),
    [
        (0, 0),  # empty recording: no windows
        (1, 1),  # shorter than one window: one window, padded with zeros
        (99, 1),
        (100, 1),  # exactly one window
        (101, 2),  # one sample more needs a second window
        (150, 2),
        (151, 3),
        (1000, 19),  # ceil(900 / 50) + 1
    ],
)
def test_n_windows_edge_cases(n_samples: int, expected: int) -> None:
    grid = WindowGrid(sample_rate=1000, hop_samples=50, window_samples=100, read_offset=0, read_samples=100)
    assert grid.n_windows(n_samples) == expected


def test_n_windows_last_window_reaches_end() -> None:
    grid = WindowGrid(sample_rate=1000, hop_samples=37, window_samples=100, read_offset=0, read_samples=100)
    for n in range(1, 600):
        k = grid.n_windows(n)
        last_end = (k - 1) * grid.hop_samples + grid.window_samples
        assert last_end >= n  # the recording is covered...
        assert k == 1 or (k - 2) * grid.hop_samples + grid.window_samples < n  # ...by no more windows than needed


def test_n_windows_rejects_negative() -> None:
    grid = WindowGrid(1000, 50, 100, 0, 100)
    with pytest.raises(ValueError, match="n_samples=-1"):
        grid.n_windows(-1)


@pytest.mark.parametrize("n_windows", [0, 1, 2, 7, 63, 64, 65, 1000])
@pytest.mark.parametrize("windows_per_segment", [1, 3, 7, 64])
def test_segments_tile_without_gap_or_overlap(n_windows: int, windows_per_segment: int) -> None:
    grid = WindowGrid(1000, 50, 100, 0, 100)
    segs = grid.segments(n_windows, windows_per_segment=windows_per_segment)
    covered = [w for w0, w1 in segs for w in range(w0, w1)]
    assert covered == list(range(n_windows))
    assert all(0 < w1 - w0 <= windows_per_segment for w0, w1 in segs)
    assert all(w1 - w0 == windows_per_segment for w0, w1 in segs[:-1])


@pytest.mark.parametrize("bad", [0, -3])
def test_segments_rejects_nonpositive_size(bad: int) -> None:
    with pytest.raises(ValueError, match=f"windows_per_segment={bad}"):
        WindowGrid(1000, 50, 100, 0, 100).segments(10, windows_per_segment=bad)


def test_window_times_values() -> None:
    grid = WindowGrid(sample_rate=22050, hop_samples=11264, window_samples=22528, read_offset=0, read_samples=23040)
    t0, t1 = grid.window_times(3, 7)
    assert t0.dtype == np.float64 and t1.dtype == np.float64 and t0.shape == (4,)
    np.testing.assert_array_equal(t0, np.arange(3, 7) * 11264 / 22050)
    np.testing.assert_allclose(t1 - t0, 22528 / 22050, rtol=1e-12)


def test_window_times_segments_agree_with_whole() -> None:
    grid = WindowGrid(16000, 7800, 15600, 0, 15600)
    whole = grid.window_times(0, 1000)
    parts = [grid.window_times(w0, w1) for w0, w1 in grid.segments(1000, windows_per_segment=37)]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))


def test_window_times_empty() -> None:
    t0, t1 = WindowGrid(1000, 50, 100, 0, 100).window_times(5, 5)
    assert t0.shape == (0,) and t1.shape == (0,)


@pytest.mark.parametrize(
    ("read_offset", "w0", "w1", "expected"),
    [(0, 0, 1, (0, 120)), (-10, 0, 1, (-10, 110)), (-10, 2, 5, (90, 310))],
)
def test_read_span_values(read_offset: int, w0: int, w1: int, expected: tuple[int, int]) -> None:
    grid = WindowGrid(1000, 50, 100, read_offset, 120)
    assert grid.read_span(w0, w1) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0},
        {"hop_samples": 0},
        {"window_samples": -1},
        {"read_samples": 0},
        {"read_offset": 5},
    ],
)
def test_windowgrid_rejects_bad_fields(kwargs: dict) -> None:
    fields = {"sample_rate": 1000, "hop_samples": 50, "window_samples": 100, "read_offset": 0, "read_samples": 100}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        WindowGrid(**fields)
