"""Graph builders: an SB-CNN-sized classifier and tiny analytic test models.

Everything here is built with :mod:`onnx.helper` (no deep-learning framework),
is deterministic from its arguments, and returns an :class:`onnx.ModelProto`
with the model card embedded under :data:`soundbatch.card.CARD_KEY`.

- :func:`build_sbcnn` builds SB-CNN (Salamon & Bello 2017) with He-initialised
  random weights. It is UNTRAINED: good for plumbing and benchmarks, it
  recognises nothing.
- :func:`build_band_energy_model` builds a classifier with no learned weights
  whose answer is known in advance from the input, for tests.
- :func:`count_macs` counts the multiply-accumulates of one window.
- :func:`make_card` makes a valid card for tests in one call.

Every builder honours the card: input layout (``NCHW``, ``NHWC``, ``NHW``,
``NT``, ``NCT``) with a dynamic batch dimension ``"N"``, input and output
names, and output activation (``softmax``, ``sigmoid`` or raw ``logits``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from soundbatch.card import CARD_KEY, FrameWindow, ModelCard, SampleWindow, card_to_json, parse_card
from soundbatch.errors import ConfigError, ModelCardError

OPSET = 17
"""ONNX opset of the built graphs (17: ``DFT``, ``LayerNorm``; onnxruntime >= 1.13)."""

IR_VERSION = 8
"""IR version of the built files, kept low so older onnxruntime builds load them."""

DEFAULT_INPUT_NAME = {"logmel": "mel", "waveform": "audio"}
DEFAULT_OUTPUT_NAME = {"softmax": "probs", "sigmoid": "probs", "logits": "logits"}

_PRODUCER = "soundbatch.onnx_build"


# --------------------------------------------------------------------------
# cards
# --------------------------------------------------------------------------


def make_card(
    *,
    layout: str = "NCHW",
    activation: str = "softmax",
    apply: str | None = None,
    classes: tuple[str, ...] | list[str] = ("low", "mid", "high"),
    name: str = "test-model",
    version: str = "0.0.0",
    description: str | None = None,
    input_name: str | None = None,
    output_name: str | None = None,
    sample_rate: int | None = None,
    n_mels: int = 64,
    frames: int = 44,
    hop_frames: int = 22,
    n_fft: int = 1024,
    hop_length: int = 512,
    samples: int | None = None,
    hop_samples: int | None = None,
) -> ModelCard:
    """A valid card for tests and examples, log-mel or waveform by ``layout``.

    Layouts ``NCHW``, ``NHWC``, ``NHW`` give a log-mel card (default 22050 Hz,
    64 mels x 44 frames, hop 22 frames); ``NT`` and ``NCT`` a waveform card
    (default 16000 Hz, ``samples = sample_rate`` (1 s), hop half of that).
    ``activation="logits"`` defaults ``apply`` to ``"softmax"``.

    Returns
    -------
    ModelCard
    """
    waveform = layout in ("NT", "NCT")
    if activation == "logits" and apply is None:
        apply = "softmax"
    data: dict = {
        "name": name,
        "version": version,
        "classes": list(classes),
        "output": {"activation": activation},
        "input": {"layout": layout},
    }
    if description is not None:
        data["description"] = description
    if apply is not None:
        data["output"]["apply"] = apply
    if input_name is not None:
        data["input"]["name"] = input_name
    if output_name is not None:
        data["output"]["name"] = output_name
    if waveform:
        sr = sample_rate or 16000
        n = samples or sr
        data["features"] = {"kind": "waveform", "sample_rate": sr}
        data["window"] = {"samples": n, "hop_samples": hop_samples or max(1, n // 2)}
    else:
        sr = sample_rate or 22050
        data["features"] = {
            "kind": "logmel", "sample_rate": sr, "n_fft": n_fft, "hop_length": hop_length,
            "n_mels": n_mels,
        }
        data["window"] = {"frames": frames, "hop_frames": hop_frames}
    return parse_card(json.dumps(data), source="make_card")


# --------------------------------------------------------------------------
# card embedding
# --------------------------------------------------------------------------


def embed_card(model_proto: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """Return a copy of ``model_proto`` with ``card`` in its metadata.

    The card is stored as JSON under ``metadata_props[CARD_KEY]``; an earlier
    card under that key is replaced. The card is not checked against the graph
    here (``soundbatch.model.load_model`` does that), so tests can build
    deliberately mismatched models.

    Parameters
    ----------
    model_proto : onnx.ModelProto
        The model; left unchanged.
    card : ModelCard
        The card to embed.

    Returns
    -------
    onnx.ModelProto
        A new model proto carrying the card.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model_proto)
    kept = [(p.key, p.value) for p in out.metadata_props if p.key != CARD_KEY]
    del out.metadata_props[:]
    for key, value in kept:
        out.metadata_props.add(key=key, value=value)
    out.metadata_props.add(key=CARD_KEY, value=card_to_json(card))
    return out


# --------------------------------------------------------------------------
# SB-CNN
# --------------------------------------------------------------------------


def build_sbcnn(card: ModelCard, *, seed: int = 0, output_scale: float = 1.0) -> onnx.ModelProto:
    """Build an UNTRAINED SB-CNN for a log-mel card.

    Architecture (Salamon & Bello 2017, "same" padding so that a 64 x 44
    window costs about 14.5 M MACs)::

        conv 5x5, 24 filters, ReLU, max-pool (4, 2)     # over (mels, frames)
        conv 5x5, 48 filters, ReLU, max-pool (4, 2)
        conv 5x5, 48 filters, ReLU
        flatten, dense 64, ReLU, dense n_classes, activation per card

    Weights are He-initialised (normal, std ``sqrt(2 / fan_in)``) from
    ``numpy.random.default_rng(seed)``; biases are zero. The same card and
    seed give byte-identical files, whatever the layout.

    Parameters
    ----------
    card : ModelCard
        A ``features.kind="logmel"`` card; gives ``n_mels``, ``window.frames``,
        the layout (``NCHW``, ``NHWC`` through a Transpose, ``NHW`` through
        an Unsqueeze), the names and the output activation.
    seed : int, optional
        Seed of the random weights.
    output_scale : float, optional
        Multiplies the last layer's weights. ``0.0`` makes an untrained model
        say so: its probabilities are exactly uniform, so every audible window
        is ``unknown`` instead of a confident random class. The compute is the same.

    Returns
    -------
    onnx.ModelProto
        Checked model with the card embedded.

    Raises
    ------
    ModelCardError
        If the card is not a log-mel card, or its window is smaller than
        16 mels x 4 frames (the two pools would leave nothing).
    """
    if not isinstance(card.window, FrameWindow) or card.features.kind != "logmel":
        raise ModelCardError(
            f"build_sbcnn needs features.kind='logmel', got features.kind={card.features.kind!r}"
        )
    n_mels = card.features.n_mels  # type: ignore[union-attr]
    frames = card.window.frames
    h2, w2 = n_mels // 4 // 4, frames // 2 // 2
    if h2 < 1 or w2 < 1:
        raise ModelCardError(
            f"build_sbcnn needs features.n_mels >= 16 and window.frames >= 4 "
            f"(two (4, 2) pools), got n_mels={n_mels}, frames={frames}"
        )
    rng = np.random.default_rng(seed)
    n_classes = len(card.classes)
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []

    graph_input, x = _logmel_input_to_nchw(card, nodes, inits)

    def conv_relu(x: str, c_in: int, c_out: int, tag: str) -> str:
        w = _he(rng, (c_out, c_in, 5, 5), fan_in=c_in * 25)
        inits.append(numpy_helper.from_array(w, f"{tag}.weight"))
        inits.append(numpy_helper.from_array(np.zeros(c_out, np.float32), f"{tag}.bias"))
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{tag}.weight", f"{tag}.bias"], [f"{tag}.out"],
                kernel_shape=[5, 5], pads=[2, 2, 2, 2], name=tag,
            )
        )
        nodes.append(helper.make_node("Relu", [f"{tag}.out"], [f"{tag}.relu"], name=f"{tag}.relu"))
        return f"{tag}.relu"

    def pool(x: str, tag: str) -> str:
        nodes.append(
            helper.make_node("MaxPool", [x], [tag], kernel_shape=[4, 2], strides=[4, 2], name=tag)
        )
        return tag

    def dense(x: str, n_in: int, n_out: int, tag: str, scale: float = 1.0) -> str:
        w = _he(rng, (n_in, n_out), fan_in=n_in) * np.float32(scale)
        inits.append(numpy_helper.from_array(w, f"{tag}.weight"))
        inits.append(numpy_helper.from_array(np.zeros(n_out, np.float32), f"{tag}.bias"))
        nodes.append(
            helper.make_node("Gemm", [x, f"{tag}.weight", f"{tag}.bias"], [f"{tag}.out"], name=tag)
        )
        return f"{tag}.out"

    x = pool(conv_relu(x, 1, 24, "conv1"), "pool1")
    x = pool(conv_relu(x, 24, 48, "conv2"), "pool2")
    x = conv_relu(x, 48, 48, "conv3")
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1, name="flatten"))
    x = dense("flat", 48 * h2 * w2, 64, "fc1")
    nodes.append(helper.make_node("Relu", [x], ["fc1.relu"], name="fc1.relu"))
    logits = dense("fc1.relu", 64, n_classes, "fc2", scale=output_scale)
    graph_output = _activation(card, logits, n_classes, nodes)
    graph = helper.make_graph(
        nodes, f"sbcnn_{card.name}", [graph_input], [graph_output], initializer=inits
    )
    return _finish(graph, card, doc="SB-CNN (Salamon & Bello 2017), He-initialised, UNTRAINED")


# --------------------------------------------------------------------------
# band-energy test model
# --------------------------------------------------------------------------


def build_band_energy_model(
    card: ModelCard, *, bands: dict[str, tuple[int, int]], gain: float = 8.0
) -> onnx.ModelProto:
    """Build an analytic (untrained) classifier whose output is known from its input.

    Log-mel cards (layouts ``NCHW``, ``NHWC``, ``NHW``): ``bands`` maps a class
    to a half-open range ``[lo, hi)`` of mel band indices. The model takes the
    mean over time frames of every mel band, then each class's logit is
    ``gain *`` the mean of those band means over its range. With standardised
    log-mel input (zero mean, unit std per window), a tone in the low bands
    gives the class owning the low bands the largest logit.

    Waveform cards (layouts ``NT``, ``NCT``): ``bands`` maps a class to a
    half-open frequency range ``[lo_hz, hi_hz)`` in Hz. The model takes the
    one-sided DFT power spectrum of the whole window (``DFT`` op; bin ``k`` is
    at ``k * sample_rate / samples`` Hz), and each class's logit is ``gain *``
    the fraction of the window's power in its range (``0`` for a silent
    window). A sine at ``f`` Hz, whole periods in the window, puts all its
    power in the class whose range holds ``f``.

    Classes not named in ``bands`` get a logit of 0. The logits then go
    through the card's activation (``softmax``, ``sigmoid``, or none for
    ``logits``).

    Parameters
    ----------
    card : ModelCard
        Any card; the layout, names, classes and activation are honoured.
    bands : dict of str to (int, int)
        Class name -> ``[lo, hi)`` mel band indices (log-mel) or Hz (waveform).
    gain : float, optional
        Scale of the logits.

    Returns
    -------
    onnx.ModelProto
        Checked model with the card embedded.

    Raises
    ------
    ConfigError
        If a band names an unknown class or its range is empty or out of bounds.
    """
    n_classes = len(card.classes)
    logmel = card.features.kind == "logmel"
    if logmel:
        n_bins = card.features.n_mels  # type: ignore[union-attr]
        bin_lo = np.arange(n_bins, dtype=np.float64)  # band index as its own "frequency"
        limit, unit = n_bins, "mel band indices"
    else:
        assert isinstance(card.window, SampleWindow)
        samples, sr = card.window.samples, card.sample_rate
        n_bins = samples // 2 + 1
        bin_lo = np.arange(n_bins, dtype=np.float64) * sr / samples
        limit, unit = sr / 2 + 1e-9, "Hz"
    weights = np.zeros((n_bins, n_classes), np.float32)
    for name, (lo, hi) in bands.items():
        if name not in card.classes:
            raise ConfigError(f"bands names class {name!r}, which is not in card.classes {card.classes}")
        if not 0 <= lo < hi or (logmel and hi > limit) or (not logmel and lo >= limit):
            raise ConfigError(
                f"bands[{name!r}]=({lo}, {hi}) must be a non-empty range [lo, hi) of {unit} "
                f"within [0, {limit if logmel else card.sample_rate / 2})"
            )
        inside = (bin_lo >= lo) & (bin_lo < hi)
        if not inside.any():
            raise ConfigError(f"bands[{name!r}]=({lo}, {hi}) {unit} holds no DFT bin")
        column = weights[:, card.classes.index(name)]
        column[inside] = 1.0 / inside.sum() if logmel else 1.0

    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = [
        numpy_helper.from_array(weights, "band_weights"),
        numpy_helper.from_array(np.array(gain, np.float32), "gain"),
    ]
    if logmel:
        graph_input = _input_value_info(card)
        name = graph_input.name
        # mean over time (and the unit channel axis) leaves [N, n_mels]
        axes = {"NCHW": [1, 3], "NHWC": [2, 3], "NHW": [2]}[card.input.layout]
        nodes.append(helper.make_node("ReduceMean", [name], ["band_mean"], axes=axes, keepdims=0))
        nodes.append(helper.make_node("MatMul", ["band_mean", "band_weights"], ["class_mean"]))
        nodes.append(helper.make_node("Mul", ["class_mean", "gain"], ["band_logits"]))
    else:
        graph_input = _input_value_info(card)
        name = graph_input.name
        if card.input.layout == "NT":
            inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes_2"))
            nodes.append(helper.make_node("Unsqueeze", [name, "axes_2"], ["signal"]))
        else:  # NCT: [N, 1, T] -> [N, T, 1]
            nodes.append(helper.make_node("Transpose", [name], ["signal"], perm=[0, 2, 1]))
        nodes.append(helper.make_node("DFT", ["signal"], ["spectrum"], axis=1, onesided=1))
        nodes.append(helper.make_node("Mul", ["spectrum", "spectrum"], ["spectrum_sq"]))
        nodes.append(helper.make_node("ReduceSum", ["spectrum_sq", "axes_last"], ["power"], keepdims=0))
        inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes_last"))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes_bins"))
        inits.append(numpy_helper.from_array(np.array(1e-30, np.float32), "tiny"))
        nodes.append(helper.make_node("MatMul", ["power", "band_weights"], ["band_power"]))
        nodes.append(helper.make_node("ReduceSum", ["power", "axes_bins"], ["total_power"], keepdims=1))
        nodes.append(helper.make_node("Add", ["total_power", "tiny"], ["total_power_eps"]))
        nodes.append(helper.make_node("Div", ["band_power", "total_power_eps"], ["band_fraction"]))
        nodes.append(helper.make_node("Mul", ["band_fraction", "gain"], ["band_logits"]))
    graph_output = _activation(card, "band_logits", n_classes, nodes)
    graph = helper.make_graph(
        nodes, f"band_energy_{card.name}", [graph_input], [graph_output], initializer=inits
    )
    return _finish(graph, card, doc=f"band-energy test model, bands={bands}, gain={gain}")


# --------------------------------------------------------------------------
# MAC count
# --------------------------------------------------------------------------


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of one window (batch 1) through ``Conv``, ``Gemm`` and ``MatMul``.

    Shapes come from ONNX shape inference with every symbolic dimension taken
    as 1. Element-wise ops, pools and activations are not counted.

    Parameters
    ----------
    model : onnx.ModelProto
        A model with static non-batch dimensions.

    Returns
    -------
    int
        MACs per window.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # [c_out, c_in/group, kh, kw]
            macs += math.prod(shapes[node.output[0]]) * math.prod(w[1:])
        elif node.op_type == "Gemm":
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            trans_b = any(at.name == "transB" and at.i for at in node.attribute)
            m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
            n = b[0] if trans_b else b[1]
            macs += m * k * n
        elif node.op_type == "MatMul":
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            macs += math.prod(out) * a[-1]
    return macs


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _he(rng: np.random.Generator, shape: tuple[int, ...], *, fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def _input_value_info(card: ModelCard) -> onnx.ValueInfoProto:
    name = card.input.name or DEFAULT_INPUT_NAME[card.features.kind]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *card.input_shape()])


def _logmel_input_to_nchw(
    card: ModelCard, nodes: list[onnx.NodeProto], inits: list[TensorProto]
) -> tuple[onnx.ValueInfoProto, str]:
    """Graph input per the card's layout, and the name of the same tensor as NCHW."""
    graph_input = _input_value_info(card)
    name = graph_input.name
    layout = card.input.layout
    if layout == "NCHW":
        return graph_input, name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [name], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"))
    else:  # NHW
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes_1"))
        nodes.append(helper.make_node("Unsqueeze", [name, "axes_1"], ["x_nchw"], name="to_nchw"))
    return graph_input, "x_nchw"


def _activation(
    card: ModelCard, logits: str, n_classes: int, nodes: list[onnx.NodeProto]
) -> onnx.ValueInfoProto:
    """Append the card's output activation; return the graph output."""
    activation = card.output.activation
    out_name = card.output.name or DEFAULT_OUTPUT_NAME[activation]
    op = {"softmax": "Softmax", "sigmoid": "Sigmoid", "logits": "Identity"}[activation]
    attrs = {"axis": -1} if op == "Softmax" else {}
    nodes.append(helper.make_node(op, [logits], [out_name], name="output", **attrs))
    return helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", n_classes])


def _finish(graph: onnx.GraphProto, card: ModelCard, *, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=_PRODUCER,
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    model = embed_card(model, card)
    onnx.checker.check_model(model, full_check=True)
    return model
