"""The ``soundbatch`` command. Parses arguments and calls the library; nothing more."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap

from soundbatch.errors import SoundbatchError

RUN_EXAMPLES = """\
examples:
  soundbatch run ./archive --out ./results
  soundbatch run s3://city-audio/2026/11/23/ --out s3://city-results/sweeps --windows
  soundbatch run uris.txt --out ./results --path-pattern '{sensor}/{start:%Y%m%d_%H%M%S}'
  soundbatch run ./archive --out ./results --config sweep.toml --min-event-s 1 --max-gap-s 0.5
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 soundbatch run s3://bucket/in --out s3://bucket/out
"""


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="sweep recordings and write event timelines",
        description="Find sound events in recordings and write the Parquet tables of the output spec.",
        epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="local folder, glob, s3://bucket/prefix, or a text file of URIs")
    p.add_argument("--out", help="output root: local folder or s3://bucket/prefix")
    p.add_argument("--config", help="TOML file with the same settings (command-line values win)")
    p.add_argument("--model", help="ONNX model with a soundbatch card (path or s3://); default: bundled")
    p.add_argument("--rms-gate-dbfs", type=float, help="windows quieter than this are `silence` (default: card)")
    p.add_argument("--ood-threshold", type=float,
                   help="top probability below this is `unknown` (default: card)")
    p.add_argument("--windows", action="store_true", default=None, help="also write the windows table")
    p.add_argument("--path-pattern", help="sensor and start time from the path, e.g. "
                   "'{sensor}/{start:%%Y%%m%%d_%%H%%M%%S}' (AudioMoth names need none)")
    p.add_argument("--min-event-s", type=float, help="drop events shorter than this (seconds)")
    p.add_argument("--max-gap-s", type=float, help="fill silence/unknown gaps up to this inside an event")
    p.add_argument("--segment-s", type=float, help="seconds of audio per unit of parallel work (default 300; less for many-channel, high-rate files)")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where inference runs (default cpu)")
    p.add_argument("--num-actors", type=int, help="worker actors (default: one per CPU, or per GPU with cuda)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from soundbatch.config import build_config
    from soundbatch.pipeline import run_sweep

    config = build_config(
        config_file=args.config, inputs=tuple(args.inputs) or None, out=args.out, model=args.model,
        rms_gate_dbfs=args.rms_gate_dbfs, ood_threshold=args.ood_threshold, write_windows=args.windows,
        path_pattern=args.path_pattern, min_event_s=args.min_event_s, max_gap_s=args.max_gap_s,
        segment_s=args.segment_s, address=args.address, device=args.device, num_actors=args.num_actors,
        num_cpus=args.num_cpus,
    )
    from soundbatch.progress import SweepProgress, print_summary

    with SweepProgress(enabled=not args.quiet) as progress:
        summary = run_sweep(config, on_progress=progress.update)
    print_summary(summary)
    return 0


def _model_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="inspect a model or embed its card")
    msub = p.add_subparsers(dest="model_cmd", required=True)
    i = msub.add_parser("inspect", help="print the card and the graph's inputs and outputs",
                        epilog="example:\n  soundbatch model inspect my-model.onnx",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("path", nargs="?", help="model path or s3:// URI (default: the bundled model)")
    i.set_defaults(func=_cmd_inspect)
    e = msub.add_parser("embed-card", help="write a copy of a model with its sidecar card embedded",
                        epilog="example:\n  soundbatch model embed-card exported.onnx --out with-card.onnx\n"
                               "  (reads exported.onnx.card.json)",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("path", help="the .onnx file; its card is read from <path>.card.json")
    e.add_argument("--out", required=True, help="where to write the model with the card embedded")
    e.set_defaults(func=_cmd_embed)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from soundbatch.model import describe, load_model

    print(describe(load_model(args.path)))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from soundbatch.model import embed_sidecar

    embed_sidecar(args.path, args.out)
    print(f"wrote {args.out}")
    return 0


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="make synthetic recordings with known events")
    ssub = p.add_subparsers(dest="synth_cmd", required=True)
    a = ssub.add_parser("archive", help="a city archive: OUT/<sensor>/YYYYMMDD_HHMMSS.flac plus truth",
                        epilog="example:\n  soundbatch synth archive ./archive --sensors 3 --hours 0.5",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("out", help="local folder or s3://bucket/prefix")
    a.add_argument("--sensors", type=int, default=3)
    a.add_argument("--hours", type=float, default=0.5, help="hours of audio per sensor")
    a.add_argument("--file-minutes", type=float, default=10.0)
    a.add_argument("--sample-rate", type=int, default=44100)
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=_cmd_synth_archive)


def _cmd_synth_archive(args: argparse.Namespace) -> int:
    from soundbatch.synth import make_archive

    truth = make_archive(args.out, sensors=args.sensors, hours=args.hours, file_minutes=args.file_minutes,
                         sample_rate=args.sample_rate, seed=args.seed)
    print(f"wrote {args.sensors} sensors x {args.hours} h to {args.out} ({len(truth)} truth events)")
    return 0


def _report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="what a sweep found: events per class and sensor, errors",
                       epilog="example:\n  soundbatch report ./results",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a sweep's output root")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from soundbatch.report import report

    print(report(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundbatch",
        description="Find sound events in archives of audio recordings (local or S3) with Ray and ONNX.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _run_parser(sub)
    _model_parser(sub)
    _synth_parser(sub)
    _report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Native thread pools at one thread in this process too (workers get the same
    # through Ray): two pools of all cores each oversubscribe a small machine.
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(key, "1")
    try:
        return args.func(args)
    except SoundbatchError as exc:
        print(f"soundbatch: error: {textwrap.shorten(str(exc), 2000)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soundbatch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
