"""Scheduled sweep of yesterday's recordings (cron, Airflow, or a Kubernetes CronJob).

    python jobs/nightly_sweep.py --input-template 's3://city-audio/{date:%Y/%m/%d}/' \
        --out s3://city-results/sweeps [any `soundbatch run` option]

``{date}`` is yesterday in UTC (or ``--date YYYY-MM-DD``). Running it twice is
safe: a sweep skips recordings it has already done.
"""

import argparse
import datetime as dt
import sys

from soundbatch.cli import main


def parse(argv: list[str]) -> tuple[list[str], list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-template", required=True, action="append",
                   help="input URI with a {date:FORMAT} placeholder; may repeat")
    p.add_argument("--date", type=dt.date.fromisoformat, help="day to sweep (default: yesterday, UTC)")
    args, rest = p.parse_known_args(argv)
    day = args.date or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
    return [t.format(date=day) for t in args.input_template], rest


if __name__ == "__main__":
    inputs, rest = parse(sys.argv[1:])
    sys.exit(main(["run", *inputs, *rest]))
