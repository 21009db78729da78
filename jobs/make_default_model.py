"""Build the bundled default model: an UNTRAINED SB-CNN for plumbing and benchmarks.

Usage::

    .venv/bin/python jobs/make_default_model.py            # -> soundbatch/models/untrained-sbcnn.onnx
    .venv/bin/python jobs/make_default_model.py --out /tmp/m.onnx --seed 1

The same seed gives a byte-identical file (same sha256), so the committed file
can be checked against this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from soundbatch.card import ModelCard, parse_card
from soundbatch.onnx_build import build_sbcnn, count_macs

URBANSOUND8K_CLASSES = [
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "soundbatch" / "models" / "untrained-sbcnn.onnx"


def default_card() -> ModelCard:
    """Card of the bundled model: 64 mels x 44 frames (about 1.02 s), 22 frames hop (about 0.51 s)."""
    return parse_card(
        json.dumps(
            {
                "name": "untrained-sbcnn",
                "version": "0.1.0",
                "description": (
                    "UNTRAINED: random weights with a zeroed output layer, for plumbing and "
                    "benchmarks only; it recognises nothing: every audible window is `unknown` "
                    "(uniform probabilities), quiet ones `silence`. A trained model replaces it (issue 3)."
                ),
                "classes": URBANSOUND8K_CLASSES,
                "background_classes": [],
                "output": {"name": "probs", "activation": "softmax"},
                "input": {"name": "mel", "layout": "NCHW"},
                "features": {
                    "kind": "logmel",
                    "sample_rate": 22050,
                    "n_fft": 1024,
                    "win_length": 1024,
                    "hop_length": 512,
                    "window": "hann",
                    "center": False,
                    "n_mels": 64,
                    "fmin": 0.0,
                    "fmax": 11025.0,
                    "htk": False,
                    "mel_norm": "slaney",
                    "power": 2.0,
                    "log": "log",
                    "log_eps": 1e-9,
                    "normalize": "window",
                },
                "window": {"frames": 44, "hop_frames": 22},
                "defaults": {"rms_gate_dbfs": -60.0, "ood_threshold": 0.5},
            }
        ),
        source="jobs/make_default_model.py",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    # A zeroed output layer: uniform probabilities, so every audible window is
    # `unknown`; the untrained model never passes for a detector.
    model = build_sbcnn(default_card(), seed=args.seed, output_scale=0.0)
    data = model.SerializeToString()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}, "
          f"{count_macs(model) / 1e6:.2f} M MACs per window)")


if __name__ == "__main__":
    main()
