"""Benchmark of `cds serve`: CDS Hooks patient-view against the real server (see README, "Benchmark").

    python bench/service.py            # 2,000 requests per concurrency level, 10,000 for memory
    python bench/service.py --quick    # 300 per level, 2,000 for memory

Starts `cds serve --workers 2 --no-auth` on an ephemeral loopback port (a throwaway SQLite
store: every patient-view is stored, as in production), and sends patient-view requests whose
prefetch holds the FHIR importer's test bundles (tests/fhir/cases/), round robin, over
keep-alive connections from one asyncio client (raw HTTP/1.1, so that the client costs little
of the two cores). Prints, in one run:

1. the in-process time of the same work (the worker's whole hook task: FHIR mapping,
   evaluation, the card's part of the report, card; and `cds.evaluate` of the Bundle alone),
   median per request;
2. latency p50/p99 and throughput at concurrency 1, 8 and 32, bounded in count and time,
   errors (anything but 200 with one card), the median time inside the server (its access
   log: from the request's arrival to the response's end, queueing for a worker included),
   the CPU per request of the server process and of the workers (less moved by the load than
   times are), and p50 / in-process median as a ratio;
3. the PSS of the server's whole process tree (server and workers) over --memory requests
   at concurrency 8, sampled every tenth of the run: first and last sample, and their ratio.

Target: p99 <= 50 ms at concurrency 8, no errors, memory flat (last / first <= 1.15).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import _mark, _tree_pids, _tree_pss_kb  # noqa: E402

CASES = sorted(p for p in (ROOT / "tests" / "fhir" / "cases").glob("*.json") if not p.name.endswith(".expected.json"))
PATH = "/cds-services/mm-treatment-sequencing"
TARGETS = {"p99_ms_at_8": 50.0, "memory_growth": 1.15}
LEVEL_DEADLINE_S = 300.0  # per concurrency level: bounds the run on a machine that is far too loaded
START_DEADLINE_S = 180.0
CDS = str(Path(sys.executable).with_name("cds"))


def _hook_body(bundle: dict) -> bytes:
    from cds.apps.http.hooks import hook_request

    return json.dumps(hook_request(bundle, "00000000-0000-4000-8000-000000000000")).encode()


# --------------------------------------------------------------------------- 1. in-process


def in_process(bundles: list[dict], rounds: int) -> dict:
    """The worker's hook task and cds.evaluate alone, in this process, on the same bundles (after a warm-up)."""
    import cds
    from cds.apps.http.hooks import bundle_from_prefetch, prefetch_for
    from cds.apps.http.work import WorkerState

    state = WorkerState(None, {})
    built = [bundle_from_prefetch(prefetch_for(b)) for b in bundles]
    hook, evaluate = [], []
    cpu0 = time.process_time()
    for r in range(rounds + 1):
        if r == 1:
            cpu0 = time.process_time()
        for b in built:
            t0 = time.perf_counter()
            kind, _ = state.handle({"kind": "hook", "bundle": b, "card_uuid": str(uuid.uuid4()), "report_url": "http://x/r"})
            t1 = time.perf_counter()
            cds.evaluate(b)
            t2 = time.perf_counter()
            assert kind == "ok", kind
            if r:  # round 0 is the warm-up
                hook.append(t1 - t0)
                evaluate.append(t2 - t1)
    cpu_ms = (time.process_time() - cpu0) / len(hook) * 1e3  # hook task + evaluate, per request
    return {
        "hook_ms": statistics.median(hook) * 1e3,
        "evaluate_ms": statistics.median(evaluate) * 1e3,
        "n": len(hook),
        "hook_cpu_ms": cpu_ms * sum(hook) / (sum(hook) + sum(evaluate)),
    }


# --------------------------------------------------------------------------- 2. the server


class Server:
    def __init__(self, workdir: Path, workers: int, cds: str = CDS):
        cmd = [cds, "serve", "--no-auth", "--port", "0", "--workers", str(workers), "--db", str(workdir / "cases.db")]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=workdir
        )
        self.url: str | None = None
        self.server_ms: list[float] = []  # each patient-view's time inside the server, from its access log
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if f"POST {PATH} 200 " in line:
                    self.server_ms.append(float(line.rsplit(" ", 2)[-2]))
                elif line.startswith("cds serve: ready on "):
                    self.url = line.split("ready on ", 1)[1].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_DEADLINE_S) or self.url is None:
            self.stop()
            raise SystemExit("cds serve did not become ready")
        host_port = self.url.split("//", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


async def _one(reader, writer, request: bytes) -> tuple[int, bytes, bool]:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


async def load(server: Server, bodies: list[bytes], concurrency: int, total: int, deadline_s: float, on_progress=None) -> dict:
    """`total` patient-views over `concurrency` keep-alive connections (stops early at the deadline)."""
    requests = [
        (
            f"POST {PATH} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    latencies: list[float] = []
    errors: list[str] = []
    sent = [0]
    end = time.monotonic() + deadline_s

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            while sent[0] < total and time.monotonic() < end:
                i = sent[0]
                sent[0] += 1
                t0 = time.perf_counter()
                status, body, close = await _one(reader, writer, requests[i % len(requests)])
                latencies.append(time.perf_counter() - t0)
                if status != 200 or len(json.loads(body)["cards"]) != 1:
                    errors.append(f"{status} {body[:120]!r}")
                if on_progress is not None:
                    on_progress(len(latencies))
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(server.host, server.port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    cpu0 = _cpu_s(server.proc.pid)
    own0 = time.process_time()
    logged = len(server.server_ms)
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    own1 = time.process_time()
    ordered = sorted(latencies)
    cpu1 = _cpu_s(server.proc.pid)
    time.sleep(0.5)  # the last access-log lines
    inside = sorted(server.server_ms[logged:]) or [0.0]
    return {
        "concurrency": concurrency,
        "n": len(ordered),
        "p50_ms": ordered[len(ordered) // 2] * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "per_s": len(ordered) / wall,
        "server_p50_ms": inside[len(inside) // 2],
        "server_cpu_ms": (cpu1[0] - cpu0[0]) / max(1, len(ordered)) * 1e3,
        "worker_cpu_ms": (cpu1[1] - cpu0[1]) / max(1, len(ordered)) * 1e3,
        "client_cpu_ms": (own1 - own0) / max(1, len(ordered)) * 1e3,
        "errors": errors,
        "complete": len(ordered) == total,
    }


def memory(server: Server, bodies: list[bytes], total: int) -> dict:
    samples: list[tuple[int, int]] = []
    step = max(1, total // 10)

    def progress(done: int) -> None:
        if done % step == 0:
            samples.append((done, _tree_pss_kb(server.proc.pid)[0]))

    r = asyncio.run(load(server, bodies, 8, total, LEVEL_DEADLINE_S * 6, progress))
    return {**r, "samples": samples}


def _cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the server process and of its descendants (the workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    kids = _tree_pids(root)[1:]  # the workers (and anything they start)
    return cpu(root), sum(cpu(k) for k in kids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 requests per level, 2,000 for memory")
    ap.add_argument("--requests", type=int, help="requests per concurrency level (default 2,000)")
    ap.add_argument("--memory", type=int, help="requests of the memory run (default 10,000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels, comma-separated (default 1,8,32)")
    ap.add_argument("--cds", default=CDS, help="the cds executable to serve with (default: this checkout's; A/B runs)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory run")
    args = ap.parse_args()
    per_level = args.requests or (300 if args.quick else 2000)
    mem_n = args.memory or (2000 if args.quick else 10_000)
    bundles = [json.loads(p.read_text(encoding="utf-8")) for p in CASES]
    bodies = [_hook_body(b) for b in bundles]
    print(
        f"cds serve benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPU core(s), "
        f"load average {os.getloadavg()[0]:.2f}, {len(bundles)} test bundles (tests/fhir/cases)"
    )
    ip = in_process(bundles, 40)
    print(f"\n1. In-process, median of {ip['n']} runs of the same bundles")
    print(f"   the worker's hook task (FHIR mapping, evaluation, card data, card) {ip['hook_ms']:.2f} ms")
    print(f"   cds.evaluate(bundle) alone                                        {ip['evaluate_ms']:.2f} ms")
    print(f"   CPU of the hook task (its share of this process's CPU time)       {ip['hook_cpu_ms']:.2f} ms")
    # this process is the load generator from now on: the in-process part left the compiled rules and every
    # module in its heap, which each full collection would traverse (pauses of tens of ms, measured as latency)
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="cds-bench-serve-") as tmp:
        server = Server(Path(tmp), args.workers, args.cds)
        try:
            asyncio.run(load(server, bodies, 2, 40, 120))  # warm-up: connections, the store, every worker
            print(
                f"\n2. patient-view against cds serve --workers {args.workers} ({server.url}), store on SQLite (WAL, synchronous=NORMAL)"
            )
            print(
                f"   {'concurrency':>11s} {'requests':>9s} {'p50':>9s} {'p99':>9s} {'req/s':>8s} {'errors':>7s} {'in server':>9s}  p50 / in-process hook task"
            )
            results = {}
            for c in (int(x) for x in args.levels.split(",")):
                r = asyncio.run(load(server, bodies, c, per_level, LEVEL_DEADLINE_S))
                results[c] = r
                cut = "" if r["complete"] else f" (stopped at the {LEVEL_DEADLINE_S:.0f} s bound)"
                print(
                    f"   {c:>11d} {r['n']:>9,d} {r['p50_ms']:7.1f}ms {r['p99_ms']:7.1f}ms {r['per_s']:8.1f} {len(r['errors']):>7d} {r['server_p50_ms']:7.1f}ms"
                    f"  {r['p50_ms'] / ip['hook_ms']:.1f}x (/ evaluate alone {r['p50_ms'] / ip['evaluate_ms']:.1f}x){cut}"
                )
                print(
                    f"   {'':11s} CPU per request: server process {r['server_cpu_ms']:.1f} ms, workers {r['worker_cpu_ms']:.1f} ms"
                    f" ({r['worker_cpu_ms'] / ip['hook_cpu_ms']:.2f}x the in-process hook task's CPU); load generator {r['client_cpu_ms']:.2f} ms"
                )
                for e in r["errors"][:3]:
                    print(f"      error: {e}")
            if 8 in results:
                at8 = results[8]
                print(
                    f"   target p99 <= {TARGETS['p99_ms_at_8']:.0f} ms at concurrency 8, no errors: "
                    f"{_mark(at8['p99_ms'] <= TARGETS['p99_ms_at_8'] and not any(r['errors'] for r in results.values()))}"
                )
            if args.no_memory:
                return
            m = memory(server, bodies, mem_n)
            first, last = m["samples"][0], m["samples"][-1]
            growth = last[1] / first[1]
            print(
                f"\n3. Memory of the server's process tree (PSS), {m['n']:,} patient-views at concurrency 8, {len(m['errors'])} errors"
            )
            print("   " + ", ".join(f"{n:,}: {kb / 1024:.0f} MB" for n, kb in m["samples"]))
            print(
                f"   after {first[0]:,} -> after {last[0]:,} requests: x{growth:.3f}   "
                f"target flat (<= x{TARGETS['memory_growth']}): {_mark(growth <= TARGETS['memory_growth'])}"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
