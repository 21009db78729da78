"""naming.py: AudioMoth names and --path-pattern templates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from soundbatch.errors import ConfigError
from soundbatch.naming import PathPattern, RecordingName, parse_recording_name

T0 = datetime(2026, 11, 23, 10, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("/data/S01/20261123_101530.WAV", RecordingName("S01", T0)),
        ("/data/S01/20261123_101530.wav", RecordingName("S01", T0)),
        ("s3://bkt/arch/AM-7/20261123_101530.FLAC", RecordingName("AM-7", T0)),
        ("/data/S01/20261123_101530.Opus", RecordingName("S01", T0)),
        ("s3://bkt/20261123_101530.WAV", RecordingName(None, T0)),  # the bucket is no sensor
        ("/20261123_101530.WAV", RecordingName(None, T0)),
        ("/data/S01/20261123_101530.txt", RecordingName(None, None)),  # not audio
        ("/data/S01/20261323_101530.WAV", RecordingName(None, None)),  # month 13
        ("/data/S01/recording.wav", RecordingName(None, None)),
        ("/data/S01/x20261123_101530.WAV", RecordingName(None, None)),
    ],
)
def test_parse_recording_name_audiomoth(uri, expected):
    assert parse_recording_name(uri, None) == expected


def test_parse_recording_name_audiomoth_is_utc():
    start = parse_recording_name("/d/S1/20261123_101530.WAV", None).start_time
    assert start is not None and start.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "pattern, uri, expected",
    [
        ("{sensor}/{start:%Y%m%d_%H%M%S}.wav", "/a/b/S01/20261123_101530.WAV", RecordingName("S01", T0)),
        ("{sensor}/{start}.wav", "s3://bkt/x/S01/20261123_101530.wav", RecordingName("S01", T0)),
        ("{sensor}_{start:%Y%m%d_%H%M%S}.wav", "/d/SITE_A_20261123_101530.wav", RecordingName("SITE_A", T0)),
        ("{sensor}/{start:%Y-%m-%dT%H-%M-%S}.flac", "/d/n7/2026-11-23T10-15-30.flac", RecordingName("n7", T0)),
        # the template need not name the extension
        ("{sensor}/{start:%Y-%m-%dT%H-%M-%S}", "/d/n7/2026-11-23T10-15-30.flac", RecordingName("n7", T0)),
        ("{sensor}/{ignore}/{start}.wav", "/d/S9/day1/20261123_101530.wav", RecordingName("S9", T0)),
        ("site-{sensor}/**/{start}.*", "/d/site-9/a/b/20261123_101530.mp3", RecordingName("9", T0)),
        ("site-{sensor}/**/{start}.*", "/d/site-9/20261123_101530.mp3", RecordingName("9", T0)),
        # the shortest trailing match wins: {sensor} is the nearest folder
        ("{sensor}/**/{start}.wav", "/d/S9/a/20261123_101530.wav", RecordingName("a", T0)),
        ("site-{sensor}/*_{start}.wav", "/d/site-12/rec_20261123_101530.wav", RecordingName("12", T0)),
        ("{sensor}/{date:%Y-%m-%d}/{time:%H%M%S}.wav", "/d/S3/2026-11-23/101530.wav", RecordingName("S3", T0)),
        ("{start:%Y%m%d_%H%M%S%z}.wav", "/d/20261123_121530+0200.wav", RecordingName(None, T0)),
        ("{start:%s}.wav", f"/d/{int(T0.timestamp())}.wav", RecordingName(None, T0)),
        ("{sensor}.wav", "/d/S4.wav", RecordingName("S4", None)),
        # no match -> nothing, never an error
        ("{sensor}/{start}.wav", "/d/S01/recording.wav", RecordingName(None, None)),
        ("{sensor}/{start}.wav", "/d/S01/20261399_101530.wav", RecordingName(None, None)),  # not a date
        ("site-{sensor}/{start}.wav", "/d/xsite-1/20261123_101530.wav", RecordingName(None, None)),  # whole components
    ],
)
def test_path_pattern_parse(pattern, uri, expected):
    assert PathPattern(pattern).parse(uri) == expected
    assert parse_recording_name(uri, pattern) == expected


def test_path_pattern_sensor_is_shortest_within_component():
    p = PathPattern("{sensor}_{ignore}.wav")
    assert p.parse("/d/AB_CD_EF.wav").sensor == "AB"


def test_parse_recording_name_accepts_compiled_pattern():
    p = PathPattern("{sensor}/{start}.wav")
    assert parse_recording_name("/d/S1/20261123_101530.wav", p) == RecordingName("S1", T0)


@pytest.mark.parametrize(
    "pattern, match",
    [
        ("{sensor}/{stat:%Y}.wav", r"unknown placeholder \{stat:%Y\}"),
        ("{site}/{start}.wav", r"unknown placeholder \{site\}"),
        ("{sensor}/{start:%Y%q}.wav", r"uses %q"),
        ("{sensor}/{sensor}.wav", r"\{sensor\} appears twice"),
        ("{sensor/{start}.wav", r"unmatched '\{'"),
        ("{sensor}}/x.wav", r"unmatched '\}'"),
        ("{start}/{date:%Y}/{time:%H}", r"either \{start:...\}"),
        ("{date:%Y-%m-%d}.wav", r"must be used together"),
        ("", r"non-empty"),
    ],
)
def test_path_pattern_invalid(pattern, match):
    with pytest.raises(ConfigError, match=match) as info:
        PathPattern(pattern)
    if pattern:
        assert repr(pattern) in str(info.value)  # the message names the pattern


def test_path_pattern_literal_braces():
    p = PathPattern("{{x}}{sensor}/{start}.wav")
    assert p.parse("/d/{x}S5/20261123_101530.wav") == RecordingName("S5", T0)
