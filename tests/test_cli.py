"""The `soundbatch` command: run, model inspect/embed-card, synth, report, errors."""

from __future__ import annotations

import json
import re
import shutil

import onnx
import pytest

from soundbatch.cli import build_parser, main
from soundbatch.onnx_build import build_band_energy_model, make_card


def test_main_help_lists_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "soundbatch run s3://" in out
    for flag in ("--model", "--rms-gate-dbfs", "--ood-threshold", "--windows", "--path-pattern",
                 "--min-event-s", "--max-gap-s", "--config", "--address"):
        assert flag in out


@pytest.mark.parametrize("argv", [["model", "inspect", "--help"], ["synth", "archive", "--help"],
                                  ["report", "--help"], ["model", "embed-card", "--help"]])
def test_main_every_command_has_an_example(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "example" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, setting",
    [(["--min-event-s", "-1"], "min_event_s"), (["--ood-threshold", "1.5"], "ood_threshold"),
     (["--segment-s", "1"], "segment_s"), (["--rms-gate-dbfs", "12"], "rms_gate_dbfs")],
)
def test_main_run_bad_setting_names_it(tmp_path, capsys, extra, setting):
    code = main(["run", str(tmp_path), "--out", str(tmp_path / "out"), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert setting in err
    assert not (tmp_path / "out").exists()


def test_main_run_config_file_unknown_setting(tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('out = "x"\nmin-event-s = 1.0\nwindow_size = 3\n')
    assert main(["run", str(tmp_path), "--config", str(cfg)]) == 2
    assert "window_size" in capsys.readouterr().err


def test_main_run_missing_input_is_a_clear_error(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_main_model_inspect_bundled_says_untrained(capsys):
    assert main(["model", "inspect"]) == 0
    out = capsys.readouterr().out
    assert "untrained-sbcnn" in out and "UNTRAINED" in out
    assert "mel" in out and "probs" in out


def test_main_model_embed_card(tmp_path, capsys):
    card = make_card(layout="NHW", classes=("a", "b"), frames=22, hop_frames=22)
    model = build_band_energy_model(card, bands={"a": (0, 32), "b": (32, 64)})
    del model.metadata_props[:]
    src = tmp_path / "exported.onnx"
    onnx.save(model, src)
    (tmp_path / "exported.onnx.card.json").write_text(json.dumps(card.model_dump(mode="json")))
    assert main(["model", "embed-card", str(src), "--out", str(tmp_path / "with-card.onnx")]) == 0
    shutil.move(tmp_path / "exported.onnx.card.json", tmp_path / "moved.json")
    assert main(["model", "inspect", str(tmp_path / "with-card.onnx")]) == 0
    assert '"NHW"' in capsys.readouterr().out


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_main_synth_run_report(ray_local, tmp_path, capsys):
    archive, out = tmp_path / "archive", tmp_path / "results"
    assert main(["synth", "archive", str(archive), "--sensors", "2", "--hours", "0.1", "--file-minutes", "3"]) == 0
    (archive / "S02" / "20261123_990000.wav").write_bytes(b"RIFF....WAVEfmt broken")
    capsys.readouterr()
    assert main(["run", str(archive), "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr().out
    for word in ("ok", "errors", "audio", "wall time", "realtime", "unknown", "20261123_990000.wav"):
        assert word in summary
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "recordings in error" in report and "S01" in report
    # Again: everything is skipped.
    assert main(["run", str(archive), "--out", str(out), "--quiet"]) == 0
    again = capsys.readouterr().out
    assert re.search(r"skipped \(already done\)\s*│\s*5\b", again)
    assert re.search(r"\bok\s*│\s*0\b", again)


def test_build_parser_run_defaults_leave_config_to_the_file():
    args = build_parser().parse_args(["run", "x", "--out", "y"])
    # Unset options stay None so a --config file's values are not overridden.
    assert args.windows is None and args.min_event_s is None and args.model is None
