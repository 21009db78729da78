"""Load an ONNX classifier with its model card, and refuse it early if they disagree.

A model is one ``.onnx`` file, local or on S3. Its card (see
``shared/specs/model-card.md``) is read from the file's metadata
(``metadata_props["soundbatch.card"]``) or, failing that, from the sidecar
``<uri>.card.json``. The card is checked against the graph's inputs and
outputs before any audio is read.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime as ort

from soundbatch import storage
from soundbatch.card import (
    CARD_KEY,
    SIDECAR_SUFFIX,
    ModelCard,
    card_to_json,
    check_card_against_graph,
    parse_card,
)
from soundbatch.errors import ModelCardError, StorageError

log = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "untrained-sbcnn.onnx"
"""File name of the bundled default model under ``soundbatch/models/``."""

_FLOAT = "tensor(float)"


@dataclass(frozen=True)
class LoadedModel:
    """A model's bytes and card, checked against each other.

    Attributes
    ----------
    uri : str
        Where the model was read from (absolute local path or ``s3://``).
    data : bytes
        The ``.onnx`` file as read; what every predictor builds its session from.
    card : ModelCard
        The model card.
    sha256 : str
        Hex SHA-256 of ``data``.
    input_name, output_name : str
        The graph tensors to feed and to read.
    """

    uri: str
    data: bytes = field(repr=False)
    card: ModelCard
    sha256: str
    input_name: str
    output_name: str

    @property
    def model_id(self) -> str:
        """``"name@version#<first 12 hex digits of sha256>"``, e.g. ``untrained-sbcnn@0.1.0#3f2a...``."""
        return f"{self.card.name}@{self.card.version}#{self.sha256[:12]}"


def load_model(uri: str | None) -> LoadedModel:
    """Read a model and its card, and check the card against the graph.

    Parameters
    ----------
    uri : str or None
        Local path or ``s3://bucket/key`` of an ``.onnx`` file; ``None`` loads
        the bundled default (``soundbatch/models/untrained-sbcnn.onnx``, an
        UNTRAINED model for plumbing and benchmarks).

    Returns
    -------
    LoadedModel

    Raises
    ------
    StorageError
        If the file cannot be read.
    ModelCardError
        If the file is not a loadable ONNX model, has no card (neither in its
        metadata nor in a sidecar), has an invalid card, or a card that does
        not match the graph (input rank or sizes, number of classes, names,
        tensor types).
    """
    if uri is None:
        uri, data = _read_bundled()
    else:
        uri = storage.normalize_uri(uri)
        data = _read_bytes(uri)
    session = _inspection_session(data, uri)
    card = _find_card(session, uri)
    input_name, output_name = _check_graph(card, session, uri)
    return LoadedModel(
        uri=uri,
        data=data,
        card=card,
        sha256=hashlib.sha256(data).hexdigest(),
        input_name=input_name,
        output_name=output_name,
    )


def embed_sidecar(model_path: str, out_path: str) -> LoadedModel:
    """Write a copy of a model with its sidecar card embedded in the ONNX metadata.

    Reads ``model_path`` and ``model_path + ".card.json"``, checks the sidecar
    card against the graph, and writes the model with the card under
    ``metadata_props["soundbatch.card"]`` (replacing any card already there)
    to ``out_path``. ``out_path`` may equal ``model_path``.

    Parameters
    ----------
    model_path : str
        Local path or ``s3://`` URI of the ``.onnx`` file.
    out_path : str
        Where to write the model with the card inside.

    Returns
    -------
    LoadedModel
        The written model, loaded back (its card now comes from its metadata).

    Raises
    ------
    ModelCardError
        If there is no sidecar, or its card is invalid or does not fit the graph.
    StorageError
        If reading or writing fails.
    """
    from soundbatch.onnx_build import embed_card

    model_path = storage.normalize_uri(model_path)
    out_path = storage.normalize_uri(out_path)
    data = _read_bytes(model_path)
    sidecar = model_path + SIDECAR_SUFFIX
    if not _exists(sidecar):
        raise ModelCardError(f"{model_path}: no sidecar card at {sidecar} to embed")
    card = parse_card(_read_bytes(sidecar), source=sidecar)
    session = _inspection_session(data, model_path)
    if CARD_KEY in session.get_modelmeta().custom_metadata_map:
        log.warning("%s: replacing the card already embedded with the one in %s", model_path, sidecar)
    _check_graph(card, session, sidecar)
    proto = embed_card(onnx.load_model_from_string(data), card)
    _write_bytes(out_path, proto.SerializeToString())
    return load_model(out_path)


def describe(loaded: LoadedModel) -> str:
    """Human-readable summary for ``soundbatch model inspect``.

    Parameters
    ----------
    loaded : LoadedModel

    Returns
    -------
    str
        The uri, model id, sha256 and size; a warning line if the card's
        description says the model is untrained; the graph's inputs and
        outputs (name, shape, type, and which ones the card uses); the card
        as pretty JSON.
    """
    session = _inspection_session(loaded.data, loaded.uri)
    lines = [
        f"model:    {loaded.uri}",
        f"model_id: {loaded.model_id}",
        f"sha256:   {loaded.sha256}",
        f"size:     {len(loaded.data)} bytes",
    ]
    if "untrained" in (loaded.card.description or "").lower():
        lines.append(
            "WARNING:  the card says this model is UNTRAINED (random weights): "
            "its labels mean nothing; use it for plumbing and benchmarks only."
        )
    lines.append("inputs:")
    for arg in session.get_inputs():
        used = "  <- fed (layout " + loaded.card.input.layout + ")" if arg.name == loaded.input_name else ""
        lines.append(f"  {arg.name}: shape {_shape(arg.shape)} {arg.type}{used}")
    lines.append("outputs:")
    for arg in session.get_outputs():
        used = f"  <- read (activation {loaded.card.output.activation})" if arg.name == loaded.output_name else ""
        lines.append(f"  {arg.name}: shape {_shape(arg.shape)} {arg.type}{used}")
    lines.append("card:")
    lines.append(card_to_json(loaded.card))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# card and graph
# --------------------------------------------------------------------------


def _inspection_session(data: bytes, uri: str) -> ort.InferenceSession:
    """A minimal CPU session, only to read metadata, inputs and outputs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelCardError(
            f"{uri}: not a loadable ONNX model ({len(data)} bytes): {exc}"
        ) from exc


def _find_card(session: ort.InferenceSession, uri: str) -> ModelCard:
    sidecar = uri + SIDECAR_SUFFIX
    embedded = session.get_modelmeta().custom_metadata_map.get(CARD_KEY)
    if embedded is not None:
        if _exists(sidecar):
            log.warning("%s: using the card in the ONNX metadata; ignoring sidecar %s", uri, sidecar)
        return parse_card(embedded, source=f"{uri} (metadata {CARD_KEY})")
    if _exists(sidecar):
        return parse_card(_read_bytes(sidecar), source=sidecar)
    raise ModelCardError(
        f"{uri}: no model card: looked in the ONNX metadata_props key {CARD_KEY!r} "
        f"and for a sidecar file {sidecar}; found neither. Write a card "
        f"(shared/specs/model-card.md) as the sidecar, or embed it with "
        f"soundbatch.model.embed_sidecar"
    )


def _check_graph(card: ModelCard, session: ort.InferenceSession, source: str) -> tuple[str, str]:
    inputs = [(a.name, list(a.shape)) for a in session.get_inputs()]
    outputs = [(a.name, list(a.shape)) for a in session.get_outputs()]
    input_name, output_name = check_card_against_graph(card, inputs, outputs, source=source)
    types = {a.name: a.type for a in [*session.get_inputs(), *session.get_outputs()]}
    for name, role in ((input_name, "input"), (output_name, "output")):
        if types[name] != _FLOAT:
            raise ModelCardError(
                f"{source}: graph {role} {name!r} has type {types[name]}; soundbatch "
                f"exchanges float32 ({_FLOAT}) with the model"
            )
    return input_name, output_name


def _shape(shape: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# --------------------------------------------------------------------------
# bytes in and out
# --------------------------------------------------------------------------


def _read_bundled() -> tuple[str, bytes]:
    try:
        ref = importlib.resources.files("soundbatch").joinpath("models", DEFAULT_MODEL_FILE)
    except (NotADirectoryError, TypeError):
        # Python 3.11's importlib.resources cannot read some namespace-package
        # layouts (soundbatch without __init__.py under an editable install).
        ref = Path(__file__).resolve().parent / "models" / DEFAULT_MODEL_FILE
    try:
        with importlib.resources.as_file(ref) as path:
            return str(path), path.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise StorageError(
            f"the bundled default model soundbatch/models/{DEFAULT_MODEL_FILE} is missing; "
            f"make it with: python jobs/make_default_model.py"
        ) from exc


def _read_bytes(uri: str) -> bytes:
    return storage.read_bytes(uri)


def _exists(uri: str) -> bool:
    return storage.exists(uri)


def _write_bytes(uri: str, data: bytes) -> None:
    storage.write_bytes(uri, data)


__all__ = ["DEFAULT_MODEL_FILE", "LoadedModel", "describe", "embed_sidecar", "load_model"]
