"""Figures for the Python package, each against a baseline measured in the same run.

    python -m shm.bench [--json] [--demo PATH]

Prints one JSON object per figure (with --json), with `what`, `ours`, `baseline`,
`baseline_value`, `ratio` (ours / baseline_value) and `cpu`:

* ``rtt_64B_p50_ns``: a 64-byte round trip between two Python processes over a channel
  (two rings), against ``multiprocessing.Pipe`` and ``multiprocessing.Queue``;
* ``aio_rtt_64B_p50_ns``: the same round trip with the initiating side in asyncio
  (``await tx.send_async``, ``await rx.recv_into_async``; the echo blocks as before),
  against the blocking one (``rtt_64B_p50_ns``'s ours) and against asyncio streams over
  a Unix socket (both sides asyncio);
* ``stream_1MiB_gib_per_s``: numpy frames of 1 MiB from one Python process to another
  (``send`` / ``recv_into``), against the Rust demo's stream on the same backend
  (``shm-demo --backend posix stream --size 1MiB``; give its path with --demo or
  SHM_DEMO).
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import time

import shm

ROUND_TRIPS = 20_000


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _p50(samples):
    return statistics.median(samples)


def rtt_shm():
    mem = shm.anon_create(shm.Channel.segment_len(1 << 16, rings=2))
    ch = shm.Channel.create(mem, rings=2)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            rx, tx = ch.receiver(0), ch.sender(1)
            buf = bytearray(64)
            for _ in range(ROUND_TRIPS + 1000):
                n = rx.recv_into(buf, timeout=30)
                tx.send(memoryview(buf)[:n], timeout=30)
            code = 0
        finally:
            os._exit(code)
    tx, rx = ch.sender(0), ch.receiver(1)
    msg = bytes(64)
    buf = bytearray(64)
    samples = []
    for i in range(ROUND_TRIPS + 1000):
        t = time.perf_counter_ns()
        tx.send(msg, timeout=30)
        rx.recv_into(buf, timeout=30)
        if i >= 1000:
            samples.append(time.perf_counter_ns() - t)
    os.waitpid(pid, 0)
    return _p50(samples)


def _echo_fork(ch):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            rx, tx = ch.receiver(0), ch.sender(1)
            buf = bytearray(64)
            for _ in range(ROUND_TRIPS + 1000):
                n = rx.recv_into(buf, timeout=30)
                tx.send(memoryview(buf)[:n], timeout=30)
            code = 0
        finally:
            os._exit(code)
    return pid


def rtt_shm_asyncio():
    import asyncio

    mem = shm.anon_create(shm.Channel.segment_len(1 << 16, rings=2))
    ch = shm.Channel.create(mem, rings=2)
    pid = _echo_fork(ch)
    tx, rx = ch.sender(0), ch.receiver(1)

    async def run():
        msg = bytes(64)
        buf = bytearray(64)
        samples = []
        for i in range(ROUND_TRIPS + 1000):
            t = time.perf_counter_ns()
            await tx.send_async(msg)
            await rx.recv_into_async(buf)
            if i >= 1000:
                samples.append(time.perf_counter_ns() - t)
        return samples

    samples = asyncio.run(run())
    os.waitpid(pid, 0)
    return _p50(samples)


def rtt_unix_asyncio():
    import asyncio
    import socket
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "s")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            async def echo(reader, writer):
                for _ in range(ROUND_TRIPS + 1000):
                    writer.write(await reader.readexactly(64))
                    await writer.drain()
                writer.close()
                stop.set()

            async def serve():
                global stop
                stop = asyncio.Event()
                srv = await asyncio.start_unix_server(echo, path)
                async with srv:
                    await stop.wait()

            asyncio.run(serve())
            code = 0
        finally:
            os._exit(code)

    async def run():
        for _ in range(1000):
            if os.path.exists(path):
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_unix_connection(path)
        msg = bytes(64)
        samples = []
        for i in range(ROUND_TRIPS + 1000):
            t = time.perf_counter_ns()
            writer.write(msg)
            await writer.drain()
            await reader.readexactly(64)
            if i >= 1000:
                samples.append(time.perf_counter_ns() - t)
        writer.close()
        return samples

    samples = asyncio.run(run())
    os.waitpid(pid, 0)
    os.unlink(path)
    os.rmdir(os.path.dirname(path))
    del socket
    return _p50(samples)


def _echo_pipe(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def rtt_pipe():
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo_pipe, args=(b, ROUND_TRIPS + 1000))
    p.start()
    msg = bytes(64)
    samples = []
    for i in range(ROUND_TRIPS + 1000):
        t = time.perf_counter_ns()
        a.send_bytes(msg)
        a.recv_bytes()
        if i >= 1000:
            samples.append(time.perf_counter_ns() - t)
    p.join()
    return _p50(samples)


def _echo_queue(qin, qout, n):
    for _ in range(n):
        qout.put(qin.get())


def rtt_queue():
    ctx = mp.get_context("fork")
    qin, qout = ctx.Queue(), ctx.Queue()
    n = ROUND_TRIPS // 4
    p = ctx.Process(target=_echo_queue, args=(qin, qout, n + 200))
    p.start()
    msg = bytes(64)
    samples = []
    for i in range(n + 200):
        t = time.perf_counter_ns()
        qin.put(msg)
        qout.get()
        if i >= 200:
            samples.append(time.perf_counter_ns() - t)
    p.join()
    return _p50(samples)


def stream_numpy(frames=2000, size=1 << 20):
    import numpy as np

    name = f"/shm-bench-py-{os.getpid()}"
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(1 << 22)))
    rx = ch.receiver()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tx = shm.Channel.attach(shm.posix_open(name)).sender()
            frame = np.ones(size, dtype=np.uint8)
            for _ in range(frames):
                tx.send(frame, timeout=30)
            code = 0
        finally:
            os._exit(code)
    out = np.empty(size, dtype=np.uint8)
    rx.recv_into(out, timeout=30)
    t = time.perf_counter()
    for _ in range(frames - 1):
        rx.recv_into(out, timeout=30)
    secs = time.perf_counter() - t
    os.waitpid(pid, 0)
    return (frames - 1) * size / secs / (1 << 30)


def stream_rust(demo, messages=5000):
    out = subprocess.run(
        [demo, "--backend", "posix", "stream", "--size", "1MiB", "--messages", str(messages), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["gib_per_s"]


def main():
    ap = argparse.ArgumentParser(prog="python -m shm.bench")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--demo", default=os.environ.get("SHM_DEMO"))
    args = ap.parse_args()
    cpu = _cpu()
    rows = []
    ours = rtt_shm()
    for name, fn in [("multiprocessing.Pipe", rtt_pipe), ("multiprocessing.Queue", rtt_queue)]:
        base = fn()
        rows.append(("rtt_64B_p50_ns", ours, name, base))
    aio = rtt_shm_asyncio()
    rows.append(("aio_rtt_64B_p50_ns", aio, "blocking (rtt_64B_p50_ns)", ours))
    rows.append(("aio_rtt_64B_p50_ns", aio, "asyncio streams over a Unix socket", rtt_unix_asyncio()))
    try:
        py = stream_numpy()
        if args.demo:
            rows.append(("stream_1MiB_gib_per_s", py, "rust", stream_rust(args.demo)))
        else:
            rows.append(("stream_1MiB_gib_per_s", py, "none (give --demo)", float("nan")))
    except ImportError:
        pass
    for what, o, b, bv in rows:
        r = {"what": what, "ours": round(o, 3), "baseline": b, "baseline_value": round(bv, 3),
             "ratio": round(o / bv, 4) if bv == bv and bv else None, "cpu": cpu, "cores": os.cpu_count()}
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{what}: ours {o:.3f}, {b} {bv:.3f}, ratio {r['ratio']}")


if __name__ == "__main__":
    main()
