"""Tests of soundbatch.model: load_model, the card checks, sidecars, describe."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from soundbatch.card import CARD_KEY, SIDECAR_SUFFIX, card_to_json, parse_card
from soundbatch.errors import ModelCardError, StorageError
from soundbatch.model import LoadedModel, describe, embed_sidecar, load_model
from soundbatch.onnx_build import build_band_energy_model, build_sbcnn, embed_card, make_card

BANDS = {"low": (0, 16), "mid": (16, 40), "high": (40, 64)}


def write(path: Path, model: onnx.ModelProto) -> str:
    path.write_bytes(model.SerializeToString())
    return str(path)


def without_card(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.metadata_props[:]
    return out


def with_card(model: onnx.ModelProto, **card_fields) -> onnx.ModelProto:
    """The same graph, with a card made from ``card_fields`` (possibly not matching it)."""
    return embed_card(model, make_card(**card_fields))


# --- load_model: happy paths -----------------------------------------------------


def test_load_model_reads_embedded_card(tmp_path):
    card = make_card(layout="NHWC", input_name="mel", output_name="probs")
    uri = write(tmp_path / "m.onnx", build_sbcnn(card))
    loaded = load_model(uri)
    assert isinstance(loaded, LoadedModel)
    assert loaded.card == card
    assert (loaded.input_name, loaded.output_name) == ("mel", "probs")
    assert loaded.data == Path(uri).read_bytes()
    assert loaded.sha256 == hashlib.sha256(loaded.data).hexdigest()
    assert loaded.uri == uri


def test_load_model_model_id_format(tmp_path):
    uri = write(tmp_path / "m.onnx", build_sbcnn(make_card(name="urban-sbcnn", version="1.2.3")))
    loaded = load_model(uri)
    digest = hashlib.sha256(Path(uri).read_bytes()).hexdigest()
    assert loaded.model_id == f"urban-sbcnn@1.2.3#{digest[:12]}"
    assert re.fullmatch(r"urban-sbcnn@1\.2\.3#[0-9a-f]{12}", loaded.model_id)


def test_load_model_relative_path_becomes_absolute(tmp_path, monkeypatch):
    write(tmp_path / "m.onnx", build_sbcnn(make_card()))
    monkeypatch.chdir(tmp_path)
    assert load_model("m.onnx").uri == str(tmp_path / "m.onnx")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW", "NT", "NCT"])
def test_load_model_every_layout(tmp_path, layout):
    card = make_card(layout=layout, samples=1000, sample_rate=8000)
    uri = write(tmp_path / "m.onnx", build_band_energy_model(card, bands={"low": (0, 4)}))
    assert load_model(uri).card.input.layout == layout


def test_load_model_none_loads_bundled_model():
    loaded = load_model(None)
    assert loaded.card.name == "untrained-sbcnn"
    assert loaded.card.version == "0.1.0"
    assert loaded.card.classes[0] == "air_conditioner"
    assert len(loaded.card.classes) == 10
    assert loaded.card.input_shape() == (1, 64, 44)
    assert "UNTRAINED" in (loaded.card.description or "")
    assert loaded.model_id.startswith("untrained-sbcnn@0.1.0#")
    assert Path(loaded.uri).name == "untrained-sbcnn.onnx"


# --- load_model: refusals ------------------------------------------------------


def test_load_model_refuses_n_mels_mismatch(tmp_path):
    uri = write(tmp_path / "m.onnx", with_card(build_sbcnn(make_card(n_mels=64)), n_mels=40))
    with pytest.raises(ModelCardError, match=r"features\.n_mels=40.*is 64"):
        load_model(uri)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW"])
def test_load_model_refuses_frames_mismatch(tmp_path, layout):
    graph = build_sbcnn(make_card(layout=layout, frames=44))
    uri = write(tmp_path / "m.onnx", with_card(graph, layout=layout, frames=86))
    with pytest.raises(ModelCardError, match=r"window\.frames=86.*is 44"):
        load_model(uri)


def test_load_model_refuses_samples_mismatch(tmp_path):
    graph = build_band_energy_model(make_card(layout="NCT", samples=1600), bands={"low": (0, 500)})
    uri = write(tmp_path / "m.onnx", with_card(graph, layout="NCT", samples=3200))
    with pytest.raises(ModelCardError, match=r"window\.samples=3200.*is 1600"):
        load_model(uri)


def test_load_model_refuses_class_count_mismatch(tmp_path):
    graph = build_sbcnn(make_card(classes=["a", "b", "c", "d"]))
    uri = write(tmp_path / "m.onnx", with_card(graph, classes=["a", "b", "c"]))
    with pytest.raises(ModelCardError, match=r"3 classes.* has 4"):
        load_model(uri)


@pytest.mark.parametrize(("graph_layout", "card_layout"), [("NCHW", "NHW"), ("NHW", "NCHW"), ("NT", "NCT")])
def test_load_model_refuses_layout_rank_mismatch(tmp_path, graph_layout, card_layout):
    graph = build_band_energy_model(make_card(layout=graph_layout), bands={"low": (0, 8)})
    uri = write(tmp_path / "m.onnx", with_card(graph, layout=card_layout))
    with pytest.raises(ModelCardError, match=rf"input\.layout={card_layout} means rank"):
        load_model(uri)


def test_load_model_refuses_unknown_output_name(tmp_path):
    graph = build_sbcnn(make_card(output_name="probs"))
    uri = write(tmp_path / "m.onnx", with_card(graph, output_name="scores"))
    with pytest.raises(ModelCardError, match=r"output\.name='scores'"):
        load_model(uri)


def test_load_model_refuses_model_without_card(tmp_path):
    uri = write(tmp_path / "m.onnx", without_card(build_sbcnn(make_card())))
    with pytest.raises(ModelCardError, match="no model card") as info:
        load_model(uri)
    assert CARD_KEY in str(info.value)
    assert uri + SIDECAR_SUFFIX in str(info.value)


def test_load_model_refuses_float16_input(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["audio"], ["probs"], to=TensorProto.FLOAT)],
        "f16",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT16, ["N", 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    uri = write(tmp_path / "m.onnx", with_card(model, layout="NT", samples=3))
    with pytest.raises(ModelCardError, match=r"tensor\(float16\)"):
        load_model(uri)


def test_load_model_refuses_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"RIFF not a model at all")
    with pytest.raises(ModelCardError, match="not a loadable ONNX model"):
        load_model(str(path))


def test_load_model_missing_file_raises_storage_error(tmp_path):
    with pytest.raises(StorageError, match="nope.onnx"):
        load_model(str(tmp_path / "nope.onnx"))


# --- sidecars ----------------------------------------------------------------------


def test_load_model_reads_sidecar_card(tmp_path):
    card = make_card(name="from-sidecar")
    uri = write(tmp_path / "m.onnx", without_card(build_sbcnn(card)))
    Path(uri + SIDECAR_SUFFIX).write_text(card_to_json(card))
    loaded = load_model(uri)
    assert loaded.card == card


def test_load_model_sidecar_is_checked_against_graph(tmp_path):
    uri = write(tmp_path / "m.onnx", without_card(build_sbcnn(make_card(n_mels=64))))
    Path(uri + SIDECAR_SUFFIX).write_text(card_to_json(make_card(n_mels=32)))
    with pytest.raises(ModelCardError, match=r"features\.n_mels=32"):
        load_model(uri)


def test_load_model_invalid_sidecar_names_file_and_field(tmp_path):
    uri = write(tmp_path / "m.onnx", without_card(build_sbcnn(make_card())))
    Path(uri + SIDECAR_SUFFIX).write_text(card_to_json(make_card()).replace('"NCHW"', '"NWHC"'))
    with pytest.raises(ModelCardError, match=r"card\.json.*input\.layout"):
        load_model(uri)


def test_load_model_embedded_card_wins_over_sidecar(tmp_path):
    uri = write(tmp_path / "m.onnx", build_sbcnn(make_card(name="embedded")))
    Path(uri + SIDECAR_SUFFIX).write_text(card_to_json(make_card(name="sidecar")))
    assert load_model(uri).card.name == "embedded"


def test_embed_sidecar_embeds_card(tmp_path):
    card = make_card(name="exported-elsewhere", layout="NHW")
    bare = without_card(build_sbcnn(card, seed=5))
    src = write(tmp_path / "in.onnx", bare)
    Path(src + SIDECAR_SUFFIX).write_text(card_to_json(card))
    out = str(tmp_path / "out" / "with-card.onnx")
    loaded = embed_sidecar(src, out)
    assert loaded.card == card
    assert loaded.uri == out
    assert not Path(out + SIDECAR_SUFFIX).exists()
    written = onnx.load(out)
    assert parse_card({p.key: p.value for p in written.metadata_props}[CARD_KEY]) == card
    # the graph itself is unchanged
    assert written.graph.SerializeToString() == bare.graph.SerializeToString()
    assert load_model(out).card == card


def test_embed_sidecar_without_sidecar_raises(tmp_path):
    src = write(tmp_path / "in.onnx", without_card(build_sbcnn(make_card())))
    with pytest.raises(ModelCardError, match=r"no sidecar card at .*in\.onnx\.card\.json"):
        embed_sidecar(src, str(tmp_path / "out.onnx"))


def test_embed_sidecar_refuses_mismatched_sidecar(tmp_path):
    src = write(tmp_path / "in.onnx", without_card(build_sbcnn(make_card(classes=["a", "b"]))))
    Path(src + SIDECAR_SUFFIX).write_text(card_to_json(make_card(classes=["a", "b", "c"])))
    with pytest.raises(ModelCardError, match="3 classes"):
        embed_sidecar(src, str(tmp_path / "out.onnx"))
    assert not (tmp_path / "out.onnx").exists()


# --- describe ------------------------------------------------------------------------


def test_describe_bundled_model_warns_untrained():
    loaded = load_model(None)
    text = describe(loaded)
    assert loaded.model_id in text
    assert loaded.sha256 in text
    assert "WARNING" in text and "UNTRAINED" in text
    assert "mel: shape [N, 1, 64, 44] tensor(float)" in text
    assert "probs: shape [N, 10] tensor(float)" in text
    assert '"street_music"' in text


def test_describe_trained_model_has_no_warning(tmp_path):
    card = make_card(description="trained on UrbanSound8K folds 1-9", layout="NT", samples=800, sample_rate=8000)
    uri = write(tmp_path / "m.onnx", build_band_energy_model(card, bands={"low": (0, 1000)}))
    text = describe(load_model(uri))
    assert "WARNING" not in text
    assert "audio: shape [N, 800] tensor(float)" in text
    assert text.count("trained on UrbanSound8K") == 1


# --- S3 (moto) ------------------------------------------------------------------------


@pytest.mark.s3
def test_load_model_from_s3_embedded_card(s3_bucket):
    from soundbatch import storage

    model = build_sbcnn(make_card(name="on-s3"))
    uri = f"{s3_bucket}/models/m.onnx"
    storage.write_bytes(uri, model.SerializeToString())
    loaded = load_model(uri)
    assert loaded.uri == uri
    assert loaded.card.name == "on-s3"
    assert loaded.sha256 == hashlib.sha256(model.SerializeToString()).hexdigest()


@pytest.mark.s3
def test_embed_sidecar_on_s3(s3_bucket):
    from soundbatch import storage

    card = make_card(name="s3-sidecar")
    src = f"{s3_bucket}/in.onnx"
    storage.write_bytes(src, without_card(build_sbcnn(card)).SerializeToString())
    with pytest.raises(ModelCardError, match="no model card"):
        load_model(src)
    storage.write_bytes(src + SIDECAR_SUFFIX, card_to_json(card).encode())
    assert load_model(src).card == card
    loaded = embed_sidecar(src, f"{s3_bucket}/out.onnx")
    assert loaded.card == card
    assert not storage.exists(f"{s3_bucket}/out.onnx{SIDECAR_SUFFIX}")


def test_load_model_bundled_never_claims_a_class():
    """The untrained default says `unknown` for any audible window, never a random class."""
    import numpy as np

    from soundbatch.gates import apply_gates
    from soundbatch.predictor import OnnxClassifier

    model = load_model(None)
    x = np.random.default_rng(0).standard_normal((32, 64, 44)).astype(np.float32)
    probs = OnnxClassifier(model).predict(x)
    np.testing.assert_allclose(probs, 1.0 / len(model.card.classes), atol=1e-6)
    labels = apply_gates(probs, np.full(32, -20.0, np.float32), classes=model.card.classes, kind="softmax",
                         rms_gate_dbfs=-60.0, thresholds=model.card.thresholds())
    assert set(labels.names) == {"unknown"}
