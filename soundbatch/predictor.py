"""One ONNX session per predictor: feature windows in, class probabilities out.

:class:`OnnxClassifier` owns a single onnxruntime session built once from a
:class:`~soundbatch.model.LoadedModel`. It lays the windows out as the card
says, runs them in chunks, and applies the activation when the graph gives
logits. The Ray adapter around it lives with the pipeline.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import onnxruntime as ort

from soundbatch.errors import ConfigError
from soundbatch.model import LoadedModel

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class OnnxClassifier:
    """Run a loaded model on feature windows.

    Parameters
    ----------
    model : LoadedModel
        Model bytes and the card checked against them.
    device : {"cpu", "cuda"}, optional
        ``"cuda"`` uses onnxruntime's CUDA provider (CPU for ops it lacks)
        and fails if it is not available.
    intra_op_threads : int, optional
        Threads inside one op. One session per core with 1 thread is the
        better layout on CPU (see ``shared/notes/stack-notes.md``).
    max_batch : int, optional
        Largest number of windows per ``session.run``; bounds memory.

    Raises
    ------
    ConfigError
        If ``device`` is not ``"cpu"`` or ``"cuda"``, CUDA was asked for but
        onnxruntime has no working CUDA provider, or a number is out of range.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: Literal["cpu", "cuda"] = "cpu",
        intra_op_threads: int = 1,
        max_batch: int = 256,
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"device={device!r} must be 'cpu' or 'cuda'")
        if not isinstance(intra_op_threads, int) or intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads={intra_op_threads!r} must be a positive integer")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch={max_batch!r} must be a positive integer")
        if device == "cuda":
            available = ort.get_available_providers()
            if CUDA_PROVIDER not in available:
                raise ConfigError(
                    f"device='cuda' needs onnxruntime's {CUDA_PROVIDER}, but this onnxruntime "
                    f"{ort.__version__} offers only {available}; install onnxruntime-gpu "
                    f"(with matching CUDA and cuDNN) or use device='cpu'"
                )
            providers = [CUDA_PROVIDER, CPU_PROVIDER]
        else:
            providers = [CPU_PROVIDER]

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(model.data, sess_options=options, providers=providers)
        if device == "cuda" and CUDA_PROVIDER not in self._session.get_providers():
            # onnxruntime falls back to CPU silently when the CUDA libraries fail to load
            raise ConfigError(
                f"device='cuda': onnxruntime could not start {CUDA_PROVIDER} for "
                f"{model.model_id} (session providers {self._session.get_providers()}); "
                f"check the CUDA and cuDNN libraries, or use device='cpu'"
            )

        self.model = model
        self.device = device
        self.max_batch = max_batch
        card = model.card
        self.n_classes = len(card.classes)
        self._layout = card.input.layout
        self._apply = card.output.apply if card.output.activation == "logits" else None
        self._window_shape = card.window_shape
        log.debug("%s: session on %s", model.model_id, self._session.get_providers())

    @property
    def providers(self) -> list[str]:
        """Execution providers of the session, in priority order."""
        return list(self._session.get_providers())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of a stack of windows.

        Parameters
        ----------
        x : np.ndarray
            ``(n, n_mels, frames)`` standardised log-mel windows (log-mel cards)
            or ``(n, samples)`` audio (waveform cards); cast to float32.

        Returns
        -------
        np.ndarray
            ``(n, n_classes)`` float32, C-contiguous: the graph's softmax or
            sigmoid output, or its logits with the card's ``apply`` done here.
            ``n == 0`` gives ``(0, n_classes)`` without running the session.

        Raises
        ------
        ConfigError
            If the window shape is not the card's.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1 + len(self._window_shape) or x.shape[1:] != self._window_shape:
            raise ConfigError(
                f"predict got windows of shape {x.shape}, but {self.model.model_id} "
                f"takes (n, {', '.join(map(str, self._window_shape))})"
            )
        n = x.shape[0]
        out = np.empty((n, self.n_classes), np.float32)
        if n == 0:
            return out
        for start in range(0, n, self.max_batch):
            chunk = _to_layout(x[start : start + self.max_batch], self._layout)
            (y,) = self._session.run([self.model.output_name], {self.model.input_name: chunk})
            if y.shape != (chunk.shape[0], self.n_classes):
                raise ConfigError(
                    f"{self.model.model_id}: output {self.model.output_name!r} has shape {y.shape}, "
                    f"expected ({chunk.shape[0]}, {self.n_classes}) for {chunk.shape[0]} windows"
                )
            out[start : start + chunk.shape[0]] = y
        if self._apply == "softmax":
            _softmax_(out)
        elif self._apply == "sigmoid":
            _sigmoid_(out)
        return out


def _to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """``(n, n_mels, frames)`` or ``(n, samples)`` -> the graph's layout, C-contiguous."""
    if layout in ("NCHW", "NCT"):
        x = x[:, None]
    elif layout == "NHWC":
        x = x[..., None]
    return np.ascontiguousarray(x)


def _softmax_(z: np.ndarray) -> None:
    """Softmax over the last axis, in place; stable for large logits."""
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)


def _sigmoid_(z: np.ndarray) -> None:
    """Logistic function, in place; never overflows (exp of a non-positive number only)."""
    e = np.exp(-np.abs(z))
    np.divide(np.where(z >= 0, 1.0, e), 1.0 + e, out=z)
