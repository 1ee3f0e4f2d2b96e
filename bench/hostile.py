"""Peak memory of `cds batch` on hostile input: the whole process tree, as PSS and as summed RSS.

    .venv/bin/python bench/hostile.py            # -j 2 (the development machine's cores) and -j 4
    .venv/bin/python bench/hostile.py --jobs 2   # one worker count

Each input is built in a temporary folder and run through `cds batch INPUT -o OUT -q -j N`; the
process tree is sampled every 10 ms from /proc (PSS from smaps_rollup, as bench/bench.py does: the
pages the forked workers share with the parent count once; the summed RSS counts them once per
process, an upper bound). Target: < 200 MB whatever the input (issue 10, defect 7).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 200
_spec = importlib.util.spec_from_file_location("cds_bench", ROOT / "bench" / "bench.py")
_bench = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_bench)  # type: ignore[union-attr]


def inputs() -> Iterator[tuple[str, Callable[[Path], None]]]:
    valid = json.dumps(json.loads((ROOT / "patient_profiles" / "frail_ecog3.json").read_text(encoding="utf-8")))
    item = '"del(17p)", '
    near = valid[:-1] + ', "cytogenetics": [' + item * (((1 << 20) - len(valid) - 40) // len(item)) + '"x"]}'

    def write(text_of: Callable[[], Iterator[str]]) -> Callable[[Path], None]:
        def make(path: Path) -> None:
            with path.open("w", encoding="utf-8") as fh:
                for part in text_of():
                    fh.write(part)

        return make

    yield (
        "one 23 MiB line: 2,000,000 cytogenetics items",
        write(lambda: iter([valid[:-1] + ', "cytogenetics": [' + item * 2_000_000 + '"x"]}\n'])),
    )
    yield "200 lines just under the 1 MiB line limit", write(lambda: (near + "\n" for _ in range(200)))
    yield (
        "one 200 MiB line without a newline, then a valid one",
        write(lambda: iter([*("x" * (1 << 20) for _ in range(200)), "\n" + valid + "\n"])),
    )
    yield "1,000,000 nested [ and 100,000 nested objects", write(lambda: iter(["[" * 1_000_000 + "\n", '{"a":' * 100_000 + "\n"]))
    yield (
        "3 lines of 90,000 keys each",
        write(lambda: ("{" + ",".join(f'"k{i}": {i}' for i in range(90_000)) + "}\n" for _ in range(3))),
    )
    yield "20,000 valid profiles (for comparison)", write(lambda: (valid + "\n" for _ in range(20_000)))


def peak(src: Path, out: Path, jobs: int) -> tuple[int, float, float, float]:
    """(exit code, peak PSS MB, peak summed RSS MB, seconds)."""
    cmd = [sys.executable, "-m", "cds", "batch", str(src), "-o", str(out), "-q", "-j", str(jobs)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    pss = rss = 0
    while proc.poll() is None:
        pss = max(pss, _bench._tree_pss_kb(proc.pid)[0])
        rss = max(rss, _bench._tree_rss_kb(proc.pid))
        time.sleep(0.01)
    return proc.returncode, pss / 1024, rss / 1024, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, nargs="*", default=[2, 4], help="worker counts (default: 2 4)")
    args = ap.parse_args()
    print(f"cds batch on hostile input: {os.cpu_count()} CPU core(s), load average {os.getloadavg()[0]:.2f}")
    print(f"{'input':55s} {'jobs':>4s} {'exit':>4s} {'PSS MB':>7s} {'RSS MB':>7s} {'s':>6s}  target < {TARGET_MB} MB")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="cds-hostile-") as tmp:
        src, out = Path(tmp) / "input.jsonl", Path(tmp) / "out.jsonl"
        for name, make in inputs():
            make(src)
            for jobs in args.jobs:
                code, pss, rss, took = peak(src, out, jobs)
                worst = max(worst, pss)
                mark = "met" if pss < TARGET_MB else "MISSED"
                print(f"{name:55s} {jobs:4d} {code:4d} {pss:7.0f} {rss:7.0f} {took:6.1f}  {mark}", flush=True)
    print(f"worst peak PSS {worst:.0f} MB: target < {TARGET_MB} MB {'met' if worst < TARGET_MB else 'MISSED'}")


if __name__ == "__main__":
    main()
