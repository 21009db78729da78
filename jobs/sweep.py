"""Ray job entry point: the same arguments as ``soundbatch run``.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/sweep.py s3://city-audio/2026/11/23/ --out s3://city-results/sweeps

Inside a job ``RAY_ADDRESS`` is set, so the sweep joins the cluster it runs on.
"""

import sys

from soundbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
