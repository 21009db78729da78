"""Tests for soundbatch.config: TOML + overrides, validation messages, freezing, results hash."""

from __future__ import annotations

import pydantic
import pytest

from soundbatch.config import AUDIO_EXTENSIONS, SweepConfig, build_config
from soundbatch.errors import ConfigError

HASH_ARGS = {"model_sha256": "ab" * 32, "card_json": "{}", "rms_gate_dbfs": -60.0, "thresholds": [0.5, 0.5]}


@pytest.fixture
def toml_file(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        "\n".join(
            [
                'inputs = ["s3://bucket/audio/", "/data/more"]',
                'out = "/tmp/out"',
                "min-event-s = 0.5",
                "max-gap-s = 0.25",
                "segment-s = 60",
                "write-windows = true",
                "rms-gate-dbfs = -55.0",
                "num-actors = 3",
                'extensions = ["WAV", ".flac"]',
            ]
        )
    )
    return path


def test_build_config_reads_toml_with_dashed_keys(toml_file):
    cfg = build_config(config_file=toml_file)
    assert isinstance(cfg, SweepConfig)
    assert cfg.inputs == ("s3://bucket/audio/", "/data/more")
    assert cfg.out == "/tmp/out"
    assert cfg.min_event_s == 0.5
    assert cfg.max_gap_s == 0.25
    assert cfg.segment_s == 60.0
    assert cfg.write_windows is True
    assert cfg.rms_gate_dbfs == -55.0
    assert cfg.num_actors == 3
    assert cfg.extensions == frozenset({".wav", ".flac"})


def test_build_config_accepts_path_as_str(toml_file):
    assert build_config(config_file=str(toml_file)).min_event_s == 0.5


def test_build_config_overrides_win_over_file(toml_file):
    cfg = build_config(config_file=toml_file, min_event_s=2.0, out="/elsewhere", write_windows=False)
    assert cfg.min_event_s == 2.0
    assert cfg.out == "/elsewhere"
    assert cfg.write_windows is False  # a False override is not "unset"
    assert cfg.max_gap_s == 0.25  # untouched settings come from the file


def test_build_config_none_override_keeps_file_value(toml_file):
    cfg = build_config(config_file=toml_file, min_event_s=None, segment_s=None)
    assert cfg.min_event_s == 0.5
    assert cfg.segment_s == 60.0


def test_build_config_without_file_uses_defaults():
    cfg = build_config(inputs="/data", out="/out")
    assert cfg.inputs == ("/data",)  # one string becomes a one-item tuple
    assert cfg.min_event_s == 0.0
    assert cfg.max_gap_s == 0.0
    assert cfg.segment_s == 300.0
    assert cfg.model is None and cfg.rms_gate_dbfs is None and cfg.ood_threshold is None
    assert cfg.extensions == AUDIO_EXTENSIONS


def test_build_config_single_input_string_in_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('inputs = "/data/a"\nout = "/out"\n')
    assert build_config(config_file=path).inputs == ("/data/a",)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0, {"dog": 0.7, "siren": 0.2}])
def test_build_config_ood_threshold_accepted(threshold):
    assert build_config(inputs="/a", out="/o", ood_threshold=threshold).ood_threshold == threshold


@pytest.mark.parametrize("where", ["file", "override"])
def test_build_config_unknown_setting_is_named(tmp_path, where):
    if where == "file":
        path = tmp_path / "c.toml"
        path.write_text('inputs = ["/a"]\nout = "/o"\nmin-evnt-s = 1.0\n')
        with pytest.raises(ConfigError, match="unknown setting 'min_evnt_s'"):
            build_config(config_file=path)
    else:
        with pytest.raises(ConfigError, match="unknown setting 'segmnt_s'"):
            build_config(inputs="/a", out="/o", segmnt_s=30)


@pytest.mark.parametrize(
    ("setting", "value", "shown"),
    [
        ("min_event_s", -1.0, "-1.0"),
        ("max_gap_s", -0.5, "-0.5"),
        ("ood_threshold", 1.5, "1.5"),
        ("ood_threshold", -0.1, "-0.1"),
        ("segment_s", 1, "1"),
        ("segment_s", 7200, "7200"),
        ("rms_gate_dbfs", 3.0, "3.0"),
        ("num_actors", 0, "0"),
        ("batch_windows", 0, "0"),
        ("device", "tpu", "'tpu'"),
    ],
)
def test_build_config_bad_value_names_setting_and_value(setting, value, shown):
    with pytest.raises(ConfigError) as info:
        build_config(inputs="/a", out="/o", **{setting: value})
    msg = str(info.value)
    assert setting in msg, msg
    assert shown in msg, msg


def test_build_config_bad_per_class_threshold_names_value():
    with pytest.raises(ConfigError, match=r"ood_threshold.*1\.5"):
        build_config(inputs="/a", out="/o", ood_threshold={"dog": 0.5, "siren": 1.5})


@pytest.mark.parametrize("setting", ["min-event-s", "segment-s"])
def test_build_config_bad_value_in_file_names_setting(tmp_path, setting):
    path = tmp_path / "c.toml"
    path.write_text(f'inputs = ["/a"]\nout = "/o"\n{setting} = -3\n')
    with pytest.raises(ConfigError, match=setting.replace("-", "_") + "=-3"):
        build_config(config_file=path)


def test_build_config_error_keeps_cause():
    with pytest.raises(ConfigError) as info:
        build_config(inputs="/a", out="/o", min_event_s=-1)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


@pytest.mark.parametrize("missing", ["inputs", "out"])
def test_build_config_missing_required_setting_is_named(missing):
    values = {"inputs": "/a", "out": "/o"}
    del values[missing]
    with pytest.raises(ConfigError, match=missing):
        build_config(**values)


def test_build_config_empty_inputs_rejected():
    with pytest.raises(ConfigError, match="inputs"):
        build_config(inputs=(), out="/o")


def test_build_config_missing_config_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"--config .*nope\.toml: no such file"):
        build_config(config_file=path)


def test_build_config_invalid_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("inputs = [\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        build_config(config_file=path)


def test_build_config_is_frozen():
    cfg = build_config(inputs="/a", out="/o")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.min_event_s = 3.0
    assert cfg.min_event_s == 0.0


def test_sweep_config_hashable_and_equal_for_same_settings():
    a = build_config(inputs="/a", out="/o", min_event_s=1.0)
    b = build_config(inputs=["/a"], out="/o", min_event_s=1.0)
    assert a == b
    assert hash(a) == hash(b)


# --- results_hash ----------------------------------------------------------------


def test_results_hash_stable():
    a = build_config(inputs="/a", out="/o", min_event_s=1.0)
    b = build_config(inputs="/a", out="/o", min_event_s=1.0)
    h = a.results_hash(**HASH_ARGS)
    assert h == a.results_hash(**HASH_ARGS) == b.results_hash(**HASH_ARGS)
    assert isinstance(h, str) and len(h) == 16
    int(h, 16)  # hex


@pytest.mark.parametrize(
    "change",
    [
        {"min_event_s": 1.5},
        {"max_gap_s": 0.5},
        {"path_pattern": "{sensor}/{date}.wav"},
    ],
)
def test_results_hash_changes_with_results_setting(change):
    base = build_config(inputs="/a", out="/o")
    changed = build_config(inputs="/a", out="/o", **change)
    assert base.results_hash(**HASH_ARGS) != changed.results_hash(**HASH_ARGS)


@pytest.mark.parametrize(
    "change",
    [
        {"model_sha256": "cd" * 32},
        {"card_json": '{"classes": ["b", "a"]}'},
        {"rms_gate_dbfs": -50.0},
        {"thresholds": [0.5, 0.6]},
    ],
)
def test_results_hash_changes_with_effective_model_settings(change):
    cfg = build_config(inputs="/a", out="/o")
    assert cfg.results_hash(**HASH_ARGS) != cfg.results_hash(**{**HASH_ARGS, **change})


@pytest.mark.parametrize(
    "change",
    [
        {"segment_s": 30.0},
        {"num_actors": 7},
        {"batch_windows": 64},
        {"out": "/other"},
        {"inputs": ["/b", "/c"]},
        {"device": "cuda"},
        {"commit_recordings": 5},
        {"num_cpus": 2},
        {"write_windows": True},
    ],
)
def test_results_hash_ignores_speed_settings(change):
    base = build_config(inputs="/a", out="/o")
    changed = build_config(**{"inputs": "/a", "out": "/o", **change})
    assert base != changed
    assert base.results_hash(**HASH_ARGS) == changed.results_hash(**HASH_ARGS)


def test_results_hash_card_default_equals_explicit_value():
    # "the card's default" and the same number given explicitly are one configuration
    implicit = build_config(inputs="/a", out="/o")
    explicit = build_config(inputs="/a", out="/o", rms_gate_dbfs=-60.0, ood_threshold=0.5)
    assert implicit.results_hash(**HASH_ARGS) == explicit.results_hash(**HASH_ARGS)
