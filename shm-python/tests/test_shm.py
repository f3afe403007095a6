"""The Python package against real processes: Python <-> Python over every backend, the
Rust demo <-> Python for records, peers that die, Ctrl-C, leaks, bad arguments.

Run by `cargo test -p shm-python` (tests/python.rs builds the wheel and runs pytest with
it on PYTHONPATH and SHM_DEMO pointing at the demo binary)."""

import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest

import shm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from helpers import check, message  # noqa: E402

DEMO = os.environ.get("SHM_DEMO")
_counter = [0]


def unique(prefix="/shm-py"):
    _counter[0] += 1
    return f"{prefix}-{os.getpid()}-{_counter[0]}"


def peer(*args):
    """Starts helpers.py ROLE ARGS in a new process and waits for its `ready` line."""
    p = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "helpers.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    line = p.stdout.readline().strip()
    assert line == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    return p


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


def dev_shm(prefix):
    return [e for e in os.listdir("/dev/shm") if e.startswith(prefix.lstrip("/"))]


def fds():
    return len(os.listdir("/proc/self/fd"))


def test_channel_posix_100000_messages_in_order_with_checksums():
    name = unique()
    size, n = 64, 100_000
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(1 << 16)))
    rx = ch.receiver()
    p = peer("send-posix", name, n, size)
    buf = bytearray(size)
    for i in range(n):
        got = rx.recv_into(buf, timeout=30)
        check(i, bytes(buf[:got]), size)
    with pytest.raises(shm.Closed):
        rx.recv(timeout=30)
    finish(p)
    rx.close()
    ch.close()
    assert dev_shm(name) == []


def test_channel_memfd_served_to_another_process():
    path = os.path.join(tempfile.gettempdir(), unique("shm-py").lstrip("/") + ".sock")
    mem = shm.memfd_create(shm.Channel.segment_len(1 << 16))
    n, size = 2000, 1000
    p = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "helpers.py"), "recv-memfd", path, str(n), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The channel is laid out first, then its fd is served (the memory keeps a dup).
    ch = shm.Channel.create(mem)
    tx = ch.sender()
    mem.serve(path, timeout=30)
    for i in range(n):
        tx.send(message(i, size), timeout=30)
    assert "ok" in finish(p)
    assert not os.path.exists(path)


def test_channel_anon_across_fork():
    mem = shm.anon_create(shm.Channel.segment_len(1 << 16))
    ch = shm.Channel.create(mem)
    rx = ch.receiver()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tx = ch.sender()
            for i in range(1000):
                tx.send(message(i, 100), timeout=30)
            tx.close()
            code = 0
        finally:
            os._exit(code)
    for i in range(1000):
        check(i, rx.recv(timeout=30), 100)
    with pytest.raises(shm.Closed):
        rx.recv(timeout=30)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_numpy_recv_into_and_frames():
    import numpy as np
    name = unique()
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(1 << 22)))
    tx, rx = ch.sender(), ch.receiver()
    frame = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    out = np.zeros_like(frame)
    for k in range(5):
        tx.send(frame + k)
        n = rx.recv_into(out, timeout=5)
        assert n == frame.nbytes
        assert (out == frame + k).all()
    # A buffer too small keeps the message in the ring.
    tx.send(frame)
    small = np.zeros(10, dtype=np.uint8)
    with pytest.raises(ValueError):
        rx.recv_into(small, timeout=5)
    assert rx.recv_into(out, timeout=5) == frame.nbytes


def test_broadcast_reliable_to_two_subscriber_processes():
    name = unique()
    n = 5000
    b = shm.Broadcast.create(
        shm.posix_create(name, shm.Broadcast.segment_len(slots=64, max_message=64)),
        slots=64,
        max_message=64,
    )
    pub = b.publisher()
    subs = [peer("subscribe", name, n) for _ in range(2)]
    assert pub.wait_for_subscribers(2, timeout=30) >= 2
    for i in range(n):
        pub.publish(i.to_bytes(8, "little") + bytes(56), timeout=30)
    for p in subs:
        assert "ok" in finish(p)


def test_broadcast_lossy_lagged_and_read_only_memfd_subscriber():
    mem = shm.memfd_create(
        shm.Broadcast.segment_len(slots=8, max_message=16, lossy=True), read_only_peers=True
    )
    path = os.path.join(tempfile.gettempdir(), unique("shm-py").lstrip("/") + ".sock")
    b = shm.Broadcast.create(mem, slots=8, max_message=16, lossy=True)
    pub = b.publisher()
    import threading

    t = threading.Thread(target=lambda: mem.serve(path, timeout=30))
    t.start()
    ro = shm.Broadcast.attach(shm.memfd_connect(path, read_only=True))
    t.join()
    sub = ro.subscriber()
    with pytest.raises(shm.ReadOnly):
        ro.publisher()
    for i in range(20):
        pub.publish(i.to_bytes(8, "little"))
    with pytest.raises(shm.Lagged) as e:
        sub.recv(timeout=5)
    missed = e.value.missed
    assert missed > 0
    k, data = sub.recv(timeout=5)
    assert int.from_bytes(data, "little") == k
    assert k == missed  # it resumed where the lag said
    # recv_into: one copy into the caller's buffer; too small, and the message stays.
    small, buf = bytearray(4), bytearray(16)
    with pytest.raises(ValueError):
        sub.recv_into(small, timeout=5)
    k2, n = sub.recv_into(buf, timeout=5)
    assert (k2, n) == (k + 1, 8) and int.from_bytes(buf[:8], "little") == k2


def test_records_cross_with_the_rust_demo():
    if not DEMO:
        pytest.skip("SHM_DEMO not set (the Rust demo binary)")
    name = unique()
    subprocess.run([DEMO, "--backend", "posix", "write", "--name", name, "--size", "4096"], check=True, capture_output=True)
    seg = shm.Segment.attach(shm.posix_open(name), name="MyData", format="QQQ")
    assert seg.read() == (100, 876, 8021)
    with pytest.raises(shm.SchemaMismatch) as e:
        shm.Segment.attach(shm.posix_open(name), name="MyData", version=2, format="QQQQ")
    rust = subprocess.run(
        [DEMO, "--backend", "posix", "read", "--name", name, "--schema", "v2"],
        capture_output=True,
        text=True,
    )
    # The same schema-mismatch text from Rust and from Python.
    assert "schema mismatch" in str(e.value)
    assert str(e.value).split(":", 1)[1].split(",")[0] in rust.stderr, (str(e.value), rust.stderr)
    seg.close()
    subprocess.run([DEMO, "--backend", "posix", "read", "--name", name, "--unlink"], check=True, capture_output=True)

    # Python writes MyData, the Rust demo reads it.
    name = unique()
    with shm.Segment.create(shm.posix_create(name, 4096), (1, 2, 3), name="MyData", format="QQQ"):
        out = subprocess.run([DEMO, "--backend", "posix", "read", "--name", name], capture_output=True, text=True)
        assert "MyData { col1: 1, col2: 2, col3: 3 }" in out.stdout, out
    assert dev_shm(name) == []


def test_numpy_dtype_record_and_foreign_segment():
    import numpy as np
    dt = np.dtype([("col1", "<u8"), ("col2", "<u8"), ("col3", "<u8")])
    name = unique()
    w = shm.Segment.create(shm.posix_create(name, 4096), (100, 876, 8021), name="MyData", dtype=dt)
    r = shm.Segment.attach(shm.posix_open(name), name="MyData", format="QQQ")
    assert r.read() == (100, 876, 8021)
    w.write((7, 8, 9))
    assert tuple(shm.Segment.attach(shm.posix_open(name), name="MyData", dtype=dt).read()) == (7, 8, 9)
    # Python's own multiprocessing.shared_memory: no header, record at offset 0.
    from multiprocessing import shared_memory

    sm = shared_memory.SharedMemory(create=True, size=4096, name=unique("shm-mp").lstrip("/"))
    try:
        sm.buf[:24] = struct.pack("qqq", 100, 876, 8021)
        f = shm.Segment.attach_foreign(shm.posix_open("/" + sm.name), format="qqq")
        assert f.read() == (100, 876, 8021)
        f.close()
    finally:
        sm.close()
        sm.unlink()


def test_a_sigkilled_python_peer_is_peer_died():
    name = unique()
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(4096)))
    rx = ch.receiver()
    p = peer("claim-sender", name)
    p.send_signal(signal.SIGKILL)  # not reaped yet: a zombie is dead too
    with pytest.raises(shm.PeerDied) as e:
        rx.recv(timeout=30)
    assert e.value.pid == p.pid
    p.wait()


def test_ctrl_c_interrupts_a_blocking_recv():
    name = unique()
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(4096)))
    _tx = ch.sender()
    p = peer("block-recv", name)
    time.sleep(0.2)
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    took = time.monotonic() - t
    assert "KeyboardInterrupt" in err, err
    assert p.returncode != 0
    print(f"Ctrl-C ended a blocking recv in {took * 1000:.0f} ms")


def test_no_leaks_after_1000_open_close_cycles():
    name = unique()
    before_fds = fds()
    for i in range(1000):
        n = f"{name}-{i % 3}"
        with shm.posix_create(n, 4096) as mem:
            ch = shm.Channel.create(mem)
            tx, rx = ch.sender(), ch.receiver()
            tx.send(b"x")
            assert rx.recv(timeout=5) == b"x"
            tx.close()
            rx.close()
            ch.close()
        m = shm.memfd_create(4096)
        m.close()
    assert dev_shm(name) == []
    assert fds() <= before_fds + 2, (before_fds, fds())


def test_bad_arguments_raise_and_never_crash():
    with pytest.raises(ValueError):
        shm.posix_create(unique(), -1)
    with pytest.raises(ValueError):
        shm.anon_create(0)
    with pytest.raises((OverflowError, ValueError)):
        shm.memfd_create(-(1 << 70))
    name = unique()
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(4096)))
    tx, rx = ch.sender(), ch.receiver()
    with pytest.raises(TypeError):
        tx.send("a str is not bytes")
    with pytest.raises(TypeError):
        tx.send(12345)
    tx.send(b"abc")
    with pytest.raises(TypeError):
        rx.recv_into(b"read-only bytes")
    with pytest.raises(TypeError):
        rx.recv_into(memoryview(b"also read-only"))
    with pytest.raises(ValueError):
        rx.recv(timeout=-1)
    assert rx.recv(timeout=5) == b"abc"
    with pytest.raises(shm.Error, match="held by live pid"):
        ch.sender()  # taken: RoleTaken
    rx.close()
    with pytest.raises(shm.Error, match="receiver was closed") as closed:
        rx.recv(timeout=0.1)
    assert type(closed.value) is shm.Error  # not a Timeout: the handle is closed
    mem = shm.posix_create(unique(), 4096)
    shm.Channel.create(mem)
    with pytest.raises(shm.Error):
        shm.Channel.create(mem)  # already handed over
    with pytest.raises(shm.Error):
        shm.Segment.create(shm.posix_create(unique(), 16), (1, 2, 3), name="MyData", format="QQQ")
    with pytest.raises(TypeError):
        shm.Segment.create(shm.posix_create(unique(), 4096), (1, 2, 3), name="MyData")
    # A read-only mapping refuses writes with shm.ReadOnly, never a crash.
    name = unique()
    w = shm.Segment.create(shm.posix_create(name, 4096), (1, 2, 3), name="MyData", format="QQQ")
    r = shm.Segment.attach(shm.posix_open(name, read_only=True), name="MyData", format="QQQ")
    with pytest.raises(shm.ReadOnly):
        r.write((4, 5, 6))
    assert r.read() == (1, 2, 3)
    w.close()


def test_the_bench_prints_its_figures_as_json():
    import json

    env = os.environ.copy()
    out = subprocess.run(
        [sys.executable, "-m", "shm.bench", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    whats = {r["what"] for r in rows}
    assert "rtt_64B_p50_ns" in whats, rows
    for r in rows:
        for k in ("what", "ours", "baseline", "baseline_value", "ratio", "cpu"):
            assert k in r, (k, r)
        assert r["ours"] > 0


M64 = (1 << 64) - 1


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def demo_checksum(b):
    """shm-demo's message checksum (shm-demo/src/msg.rs), in Python."""
    sums = [0, 0, 0, 0]
    full = len(b) // 32 * 32
    for off in range(0, full, 32):
        for i in range(4):
            sums[i] = (sums[i] + int.from_bytes(b[off + 8 * i : off + 8 * i + 8], "little")) & M64
    h = len(b)
    for s in sums:
        h = _rotl(h, 17) ^ ((s * 0x9E3779B97F4A7C15) & M64)
    for x in b[full:]:
        h = _rotl(h, 5) ^ x
    return h


def demo_message(seq, size):
    """A message as shm-demo's publisher makes it (size >= 24)."""
    buf = bytearray((i * 151 + 7) & 0xFF for i in range(size))
    buf[16:24] = ((seq * 0x2545F4914F6CDD1D) & M64).to_bytes(8, "little")
    buf[0:8] = seq.to_bytes(8, "little")
    buf[8:16] = (demo_checksum(bytes(buf[16:])) ^ seq).to_bytes(8, "little")
    return bytes(buf)


def test_broadcast_crosses_with_the_rust_demo_both_ways():
    if not DEMO:
        pytest.skip("SHM_DEMO not set (the Rust demo binary)")
    # Rust publishes, Python subscribes and checks every message (number and checksum).
    name = unique()
    n, size = 5000, 64
    pub = subprocess.Popen(
        [DEMO, "--backend", "posix", "publish", "--name", name, "--messages", str(n),
         "--size", str(size), "--wait-subscribers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            b = shm.Broadcast.attach(shm.posix_open(name))
            break
        except shm.Error:
            assert time.monotonic() < deadline, "the demo's broadcast never appeared"
            time.sleep(0.01)
    sub = b.subscriber()
    got = []
    while True:
        try:
            k, data = sub.recv(timeout=30)
        except shm.Closed:
            break
        assert data == demo_message(k, size), k
        got.append(k)
    assert got == list(range(n))
    out, err = pub.communicate(timeout=30)
    assert pub.returncode == 0, err
    sub.close()
    b.close()

    # Python publishes in the demo's format, the Rust demo subscribes and verifies.
    name = unique()
    mem = shm.posix_create(name, shm.Broadcast.segment_len(slots=64, max_message=size))
    b = shm.Broadcast.create(mem, slots=64, max_message=size)
    p = b.publisher()
    rust = subprocess.Popen(
        [DEMO, "--backend", "posix", "subscribe", "--name", name, "--count", str(n), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    p.wait_for_subscribers(1, timeout=30)
    for k in range(n):
        p.publish(demo_message(k, size), timeout=30)
    out, err = rust.communicate(timeout=60)
    assert rust.returncode == 0, err
    import json

    report = json.loads(out.strip().splitlines()[-1])
    assert report["got"] == n and report["verified"] and report["missed"] == 0, report
    p.close()
    b.close()
    assert dev_shm(name) == []


def test_seqlock_snapshots_never_tear_across_processes():
    name = unique()
    lock = shm.SeqLock.create(shm.posix_create(name, 4096), (0, 0, 0), name="Triple", format="QQQ")
    p = peer("seqlock-writer", name, 200_000)
    seen = 0
    while p.poll() is None:
        a, b, c = lock.load()
        assert (b, c) == (a * 2, a * 3), (a, b, c)  # never a mix of two stores
        seen += 1
    assert "ok" in finish(p)
    assert lock.load() == (199_999, 399_998, 599_997)
    assert seen > 0
    with pytest.raises(shm.SchemaMismatch):
        shm.SeqLock.attach(shm.posix_open(name), name="Triple", format="QQ")
    with pytest.raises(shm.Error):
        shm.Segment.attach(shm.posix_open(name), name="Triple", format="QQQ")  # a seqlock, not a record
    lock.close()
    assert dev_shm(name) == []


def test_reserve_writes_in_place_and_no_view_outlives_the_slot():
    import numpy as np
    name = unique()
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(1 << 16)))
    tx, rx = ch.sender(), ch.receiver()
    res = tx.reserve(16)
    assert len(res) == 16
    with memoryview(res) as v:
        v[:] = b"0123456789abcdef"
    res.commit()
    assert rx.recv(timeout=5) == b"0123456789abcdef"

    # A live view blocks the commit, and the sender reserves nothing else meanwhile.
    res = tx.reserve(8)
    v = res.view()
    v[:] = b"x" * 8
    with pytest.raises(BufferError):
        res.commit()
    with pytest.raises(shm.Error):
        tx.send(b"y")
    with pytest.raises(BufferError):
        tx.close()
    v.release()
    res.commit()
    assert rx.recv(timeout=5) == b"x" * 8
    # After the commit the slot is no longer ours: an exception, not a crash.
    with pytest.raises(BufferError):
        memoryview(res)
    with pytest.raises(shm.Error):
        res.commit()

    # numpy straight into the ring.
    res = tx.reserve(4 * 100)
    arr = np.frombuffer(res, dtype=np.float32)
    arr[:] = np.arange(100, dtype=np.float32)
    del arr
    res.commit()
    got = np.frombuffer(rx.recv(timeout=5), dtype=np.float32)
    assert (got == np.arange(100, dtype=np.float32)).all()

    # A context manager commits on success and abandons on an exception.
    with tx.reserve(3) as r:
        with memoryview(r) as v:
            v[:] = b"abc"
    assert rx.recv(timeout=5) == b"abc"
    with pytest.raises(RuntimeError):
        with tx.reserve(3) as r:
            raise RuntimeError("changed my mind")
    assert rx.try_recv() is None
    # Dropped without a commit: abandoned, the sender reserves again.
    r = tx.reserve(5)
    del r
    tx.send(b"after")
    assert rx.recv(timeout=5) == b"after"
    with pytest.raises(ValueError):
        tx.reserve(-1)


def test_channel_crosses_with_the_rust_demo_both_ways():
    if not DEMO:
        pytest.skip("SHM_DEMO not set (the Rust demo binary)")
    import json

    n, size = 20000, 100
    # Rust sends, Python receives and checks every message (number and checksum).
    name = unique()
    rust = subprocess.Popen(
        [DEMO, "--backend", "posix", "send", "--name", name, "--messages", str(n), "--size", str(size)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            ch = shm.Channel.attach(shm.posix_open(name))
            break
        except shm.Error:
            assert time.monotonic() < deadline, "the demo's channel never appeared"
            time.sleep(0.01)
    rx = ch.receiver()
    for k in range(n):
        assert rx.recv(timeout=30) == demo_message(k, size), k
    with pytest.raises(shm.Closed):
        rx.recv(timeout=30)
    rx.close()
    ch.close()
    _, err = rust.communicate(timeout=60)
    assert rust.returncode == 0, err

    # Python sends in the demo's format, Rust receives and verifies.
    name = unique()
    ch = shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(1 << 16)))
    tx = ch.sender()
    rust = subprocess.Popen(
        [DEMO, "--backend", "posix", "receive", "--name", name, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for k in range(n):
        tx.send(demo_message(k, size), timeout=30)
    tx.close()
    out, err = rust.communicate(timeout=60)
    assert rust.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["got"] == n and report["verified"] and report["end"] == "closed", report
    ch.close()
    assert dev_shm(name) == []


def test_context_managers_close_and_unlink():
    name = unique()
    with shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(4096))) as ch:
        with ch.sender() as tx, ch.receiver() as rx:
            tx.send(b"x")
            assert rx.recv(timeout=5) == b"x"
        assert dev_shm(name) != []
    assert dev_shm(name) == []
    name = unique()
    with shm.Broadcast.create(shm.posix_create(name, shm.Broadcast.segment_len(slots=4)), slots=4) as b:
        with b.publisher() as p, b.subscriber() as s:
            p.publish(b"y")
            assert s.recv(timeout=5) == (0, b"y")
    assert dev_shm(name) == []
    name = unique()
    with shm.SeqLock.create(shm.posix_create(name, 4096), (1, 2), name="Pair", format="II") as lock:
        assert lock.load() == (1, 2)
    assert dev_shm(name) == []


def test_try_forms_follow_the_naming_scheme():
    """try_ never waits: Full now, or None when nothing is there (a poll raises
    nothing); the buffer forms keep a too-large message."""
    import warnings

    name = unique()
    with shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(256))) as ch:
        with ch.sender() as tx, ch.receiver() as rx:
            assert rx.try_recv() is None
            assert rx.try_recv_into(bytearray(16)) is None
            sent = 0
            with pytest.raises(shm.Full):
                while True:
                    tx.try_send(bytes([sent % 256]) * 40)
                    sent += 1
            assert sent >= 2
            small = bytearray(8)
            with pytest.raises(ValueError):
                rx.try_recv_into(small)  # 40 bytes do not fit: it stays
            big = bytearray(64)
            assert rx.try_recv_into(big) == 40 and big[:40] == bytes([0]) * 40
    assert dev_shm(name) == []

    name = unique()
    mem = shm.posix_create(name, shm.Broadcast.segment_len(slots=2, max_message=16))
    with shm.Broadcast.create(mem, slots=2, max_message=16) as b:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = b.subscribe()
        assert [w.category for w in caught] == [DeprecationWarning]
        old.close()
        with b.publisher() as p, b.subscriber() as s:
            assert s.try_recv() is None
            p.try_publish(b"a")
            p.try_publish(b"bb")
            with pytest.raises(shm.Full):
                p.try_publish(b"ccc")  # reliable, two slots, the subscriber read none
            assert s.try_recv() == (0, b"a")
            buf = bytearray(1)
            with pytest.raises(ValueError):
                s.try_recv_into(buf)
            buf = bytearray(4)
            assert s.try_recv_into(buf) == (1, 2) and buf[:2] == b"bb"
            assert s.try_recv_into(buf) is None
    assert dev_shm(name) == []


def test_backend_errors_are_typed_exceptions():
    """A caller tells a missing segment from a taken name without reading the text."""
    name = unique()
    with pytest.raises(shm.NotFound):
        shm.posix_open(name)
    mem = shm.posix_create(name, 4096)
    try:
        with pytest.raises(shm.AlreadyExists) as e:
            shm.posix_create(name, 4096)
        assert isinstance(e.value, shm.Error) and name in str(e.value)
    finally:
        mem.close()
    assert dev_shm(name) == []
    with pytest.raises(ValueError):
        shm.posix_create("no/slash/allowed/inside", 4096)
    path = os.path.join(tempfile.mkdtemp(), "none.sock")
    with pytest.raises(shm.NotFound):
        shm.memfd_connect(path, timeout=0.5)


def test_events_between_python_processes_and_a_killed_notifier():
    name, ack = unique("/shm-py-ev"), unique("/shm-py-ack")
    size = shm.Event.segment_len(max_ids=64)
    with shm.posix_create(name, size) as m1, shm.posix_create(ack, size) as m2:
        listener = shm.Event.create(m1, max_ids=64).listener()
        answer = shm.Event.create(m2).notifier()
        assert listener.wait(timeout=0.01) == set()  # a timeout is an empty set
        assert listener.try_wait() == set()
        p = peer("notify", name, 300, ack, 1)
        for i in range(300):
            assert listener.wait(timeout=30) == {i % 64}, i
            answer.notify(i % 64)
        assert listener.wait(timeout=30) == {63}
        with pytest.raises(shm.PeerDied) as e:
            listener.wait(timeout=30)
        assert e.value.pid == p.pid
        p.wait(timeout=30)
        assert p.returncode == -signal.SIGKILL
        assert listener.wait(timeout=0.05) == set()  # reported once
        with pytest.raises(ValueError):
            answer.notify(64)


def test_waitset_wait_returns_the_ready_objects():
    chan, ev = unique("/shm-py-wsc"), unique("/shm-py-wse")
    with shm.posix_create(chan, shm.Channel.segment_len(1 << 14)) as mc, \
            shm.posix_create(ev, shm.Event.segment_len()) as me:
        rx = shm.Channel.create(mc, capacity=1 << 14).receiver()
        listener = shm.Event.create(me).listener()
        ws = shm.WaitSet()
        ws.attach(rx)
        ws.attach(listener)
        assert len(ws) == 2
        assert ws.wait(timeout=0.02) == []
        with pytest.raises(TypeError):
            ws.attach(object())
        p = peer("feed", chan, ev, 200)
        got, seen_listener = 0, False
        while got < 200:
            ready = ws.wait(timeout=30)
            assert ready, "nothing ready within 30 s"
            for obj in ready:
                if obj is rx:
                    check(got, rx.try_recv(), 64)
                    got += 1
                else:
                    assert obj is listener
                    assert listener.try_wait() <= {1}
                    seen_listener = True
        assert seen_listener
        finish(p)
        listener.try_wait()  # the feeder's last notify, if it came after its last message
        # The sender closed: the receiver is ready, and its own call says why.
        assert ws.wait(timeout=30) == [rx]
        with pytest.raises(shm.Closed):
            rx.try_recv()
        ws.detach(rx)
        assert len(ws) == 1


def _set_threads():
    """The names of this process's wait set threads (watcher, looker) now."""
    names = []
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass
    return sorted(n for n in names if n.startswith("shm-waitset"))


def test_waitset_fileno_with_selectors_and_asyncio():
    import asyncio
    import selectors

    before = _set_threads()

    chan, ev = unique("/shm-py-wfc"), unique("/shm-py-wfe")
    with shm.posix_create(chan, shm.Channel.segment_len(1 << 14)) as mc, \
            shm.posix_create(ev, shm.Event.segment_len()) as me:
        rx = shm.Channel.create(mc, capacity=1 << 14).receiver()
        event = shm.Event.create(me)  # kept: the creator's handle owns the name
        ws = shm.WaitSet()
        ws.attach(rx)
        fd = ws.fileno()
        assert ws.fileno() == fd
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        assert sel.select(timeout=0.02) == []  # nothing ready: not readable
        p = peer("feed", chan, ev, 100)
        got = 0
        # Half the stream through selectors ...
        while got < 50:
            assert sel.select(timeout=30), "the fd never became readable"
            for obj in ws.try_wait():
                assert obj is rx
                while got < 100 and (msg := rx.try_recv()) is not None:
                    check(got, msg, 64)
                    got += 1
        sel.close()

        # ... the rest through asyncio's add_reader.
        async def rest():
            nonlocal got
            loop = asyncio.get_running_loop()
            woke = asyncio.Event()
            loop.add_reader(fd, woke.set)
            try:
                while got < 100:
                    await asyncio.wait_for(woke.wait(), 30)
                    woke.clear()
                    for obj in ws.try_wait():
                        while got < 100 and (msg := obj.try_recv()) is not None:
                            check(got, msg, 64)
                            got += 1
            finally:
                loop.remove_reader(fd)

        asyncio.run(rest())
        assert got == 100
        finish(p)
        threads = _set_threads()
        assert len(threads) >= len(before) + 2, "the fd's watcher and looker are not running"
        del ws  # its threads end (joined) and the fd closes
        # A joined thread can linger in /proc for a moment after its join returned.
        deadline = time.monotonic() + 5
        while len(_set_threads()) > len(before) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _set_threads() == before
        with pytest.raises(OSError):
            os.fstat(fd)
        event.close()


def _raise_timeout(_):
    raise shm.Timeout("timed out after 0.100 s")


def test_exceptions_live_in_shm_pickle_and_say_their_message():
    import multiprocessing
    import pickle

    for name in ["Error", "Timeout", "Closed", "PeerDied", "Lagged", "UpstreamLost",
                 "Evicted", "SchemaMismatch", "ReadOnly", "Truncated", "Corrupt", "Full",
                 "Empty", "NotFound", "AlreadyExists", "PermissionDenied", "NoSpace"]:
        cls = getattr(shm, name)
        assert cls.__module__ == "shm", (name, cls.__module__)
        e = pickle.loads(pickle.dumps(cls("why")))
        assert type(e) is cls and str(e) == "why", name
    # A real PeerDied: its message is its str(), its pid a named attribute that a pickle
    # round trip keeps.
    mem = shm.anon_create(shm.Channel.segment_len(4096))
    ch = shm.Channel.create(mem, capacity=4096)
    rx = ch.receiver()
    pid = os.fork()
    if pid == 0:
        tx = ch.sender()  # held: the process dies with the end open
        os.kill(os.getpid(), signal.SIGKILL)
        print(tx)
    os.waitpid(pid, 0)
    with pytest.raises(shm.PeerDied) as e:
        rx.recv(timeout=10)
    assert e.value.pid == pid
    assert str(e.value) == e.value.args[0] and str(pid) in str(e.value)
    back = pickle.loads(pickle.dumps(e.value))
    assert (type(back), back.pid, str(back)) == (shm.PeerDied, pid, str(e.value))
    # Raised in a Pool worker, it reaches the parent as itself.
    with multiprocessing.get_context("fork").Pool(1) as pool:
        with pytest.raises(shm.Timeout, match="timed out"):
            pool.map(_raise_timeout, [1])
    # Tracebacks name it shm.Timeout.
    assert f"{shm.Timeout.__module__}.{shm.Timeout.__qualname__}" == "shm.Timeout"


def test_memory_repr_reads_as_python():
    name = unique("/shm-py-repr")
    with shm.posix_create(name, 4096) as m:
        assert repr(m) == f"Memory(backend='posix', len=4096, name='{name}')"
    a = shm.anon_create(4096)
    assert repr(a) == "Memory(backend='anon', len=4096, name=None)"


def test_sizes_that_cannot_be_laid_out_are_value_errors():
    # A capacity that is not a power of two used to be sized for, and Channel.create
    # then quietly laid a 512-byte ring into the 1,000-byte request's memory.
    for bad in [1000, 63, 0]:
        with pytest.raises(ValueError, match="power of two"):
            shm.Channel.segment_len(bad)
    with pytest.raises(ValueError, match="1 or 2"):
        shm.Channel.segment_len(4096, rings=3)
    with pytest.raises(ValueError):
        shm.Event.segment_len(max_ids=0)
    with pytest.raises(ValueError):
        shm.Event.segment_len(max_ids=4097)
    assert shm.Channel.segment_len(1024) > 1024


def test_posix_open_waits_for_a_name_and_ctrl_c_ends_long_waits():
    name = unique("/shm-py-later")
    made = []

    def later():
        time.sleep(0.3)
        made.append(shm.posix_create(name, 4096))

    import threading

    t = threading.Thread(target=later)
    t.start()
    start = time.monotonic()
    mem = shm.posix_open(name, wait=30)
    assert time.monotonic() - start >= 0.25
    assert len(mem) == 4096
    t.join()
    # A name that never comes: NotFound once the wait is over, not before.
    start = time.monotonic()
    with pytest.raises(shm.NotFound):
        shm.posix_open(unique("/shm-py-never"), wait=0.2)
    assert time.monotonic() - start >= 0.2
    with pytest.raises(ValueError):
        shm.posix_open(name, wait=-1)
    del mem
    made.clear()
    # Ctrl-C ends an hour-long wait for a name, and an hour-long serve(), at once.
    sock = os.path.join(tempfile.mkdtemp(), "serve.sock")
    for args in [("wait-open", unique("/shm-py-never")), ("serve-forever", sock)]:
        p = peer(*args)
        time.sleep(0.2)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert "KeyboardInterrupt" in err, (args, err)
        assert time.monotonic() - t0 < 10, args


def test_huge_and_bad_timeouts_never_panic():
    # Past what the clock can hold (or inf): no limit, never a PanicException; NaN and
    # negatives are ValueError. The calls below end at once for another reason (a closed
    # sender, room in the ring, subscribers already there, no such path).
    huge = [1e19, 1e30, float("inf")]
    name = unique()
    with shm.Channel.create(shm.posix_create(name, shm.Channel.segment_len(4096))) as ch:
        rx = ch.receiver()
        with ch.sender() as tx:
            for t in huge:
                tx.send(b"x", timeout=t)
                assert rx.recv(timeout=t) == b"x"
            for bad in [float("nan"), -1.0, float("-inf")]:
                with pytest.raises(ValueError):
                    rx.recv(timeout=bad)
                with pytest.raises(ValueError):
                    tx.send(b"x", timeout=bad)
        for t in huge:
            with pytest.raises(shm.Closed):
                rx.recv(timeout=t)
    for t in huge:
        mem = shm.anon_create(shm.Broadcast.segment_len(slots=4, max_message=16))
        with pytest.raises(ValueError, match="at most one hour"):
            shm.Broadcast.create(mem, slots=4, max_message=16, evict_timeout=t)
        mem = shm.anon_create(shm.Broadcast.segment_len(slots=4, max_message=16))
        b = shm.Broadcast.create(mem, slots=4, max_message=16)
        assert b.publisher().wait_for_subscribers(0, timeout=t) == 0
        with pytest.raises(shm.NotFound):
            shm.memfd_connect(os.path.join(tempfile.mkdtemp(), "nobody.sock"), timeout=t)
        ev = shm.Event.create(shm.anon_create(shm.Event.segment_len()))
        listener = ev.listener()
        ev.notifier().notify(1)
        assert listener.wait(timeout=t) == {1}
    with pytest.raises(ValueError):
        shm.Broadcast.create(shm.anon_create(4096), evict_timeout=float("nan"))
    with pytest.raises(ValueError):
        shm.posix_open(name, wait=float("nan"))
    with pytest.raises(ValueError):
        shm.memfd_create(4096).serve("/nonexistent/x.sock", timeout=-1)


def test_services_between_python_processes():
    name = unique("/shm-py-svc")
    size = shm.Service.segment_len(max_request=256, max_response=256, slots=8)
    with shm.posix_create(name, size) as mem:
        svc = shm.Service.create(mem, max_request=256, max_response=256, slots=8)
        client = svc.client()
        servers = [peer("serve", name), peer("serve", name)]
        for i in range(2000):
            req = f"call {i}".encode()
            assert client.call(req, timeout=30) == req[::-1], i
        # A stream, iterated.
        assert list(client.send_request(b"stream 5", timeout=30)) == [
            i.to_bytes(4, "little") for i in range(5)
        ] + [b"end"]
        # A server killed holding the request: PeerDied with its pid.
        with pytest.raises(shm.PeerDied) as e:
            client.call(b"die", timeout=30)
        dead = [p for p in servers if p.pid == e.value.pid]
        assert len(dead) == 1
        dead[0].wait(timeout=30)
        assert dead[0].returncode == -signal.SIGKILL
        # The other server goes on; then it stops.
        assert client.call(b"abc", timeout=30) == b"cba"
        alive = [p for p in servers if p is not dead[0]][0]
        assert client.call(b"stop", timeout=30) == b""
        assert "ok" in finish(alive)
        # No server now: the deadline ends the call; no slot stays held.
        t = time.monotonic()
        with pytest.raises(shm.Timeout):
            client.call(b"nobody", timeout=0.1)
        assert 0.1 <= time.monotonic() - t < 5


def test_service_server_in_python_deadline_errors_and_cancel():
    size = shm.Service.segment_len()
    mem = shm.anon_create(size)
    svc = shm.Service.create(mem)
    client, server = svc.client(), svc.server()
    assert server.try_receive() is None
    pending = client.send_request(b"x", timeout=5.0)
    req = server.receive(timeout=5)
    assert req.data == b"x" and req.client_pid == os.getpid()
    assert 3.0 < req.remaining <= 5.0
    assert abs(req.deadline - (time.monotonic() + req.remaining)) < 0.5
    req.respond_error(42)
    with pytest.raises(shm.ServerError) as e:
        pending.receive()
    assert e.value.code == 42
    # Cancelled: the client closes its pending response.
    pending = client.send_request(b"y")
    req = server.receive(timeout=5)
    pending.close()
    assert req.is_cancelled()
    with pytest.raises(shm.Cancelled):
        req.respond(b"too late")
    # Unanswered: the client's call is Closed.
    pending = client.send_request(b"z")
    server.receive(timeout=5).close()
    with pytest.raises(shm.Closed):
        pending.receive(timeout=5)
    with pytest.raises(shm.Timeout):
        server.receive(timeout=0.01)
    with pytest.raises(ValueError):
        shm.Service.segment_len(slots=0)
    with pytest.raises(ValueError):
        client.call(b"q", timeout=-1)


def _run_python(code, timeout=60):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


def test_a_thread_blocked_at_exit_neither_aborts_nor_leaks():
    # A daemon thread blocked in a wait when the interpreter exits (issue 29, item 1):
    # the process used to abort (SIGABRT, "FATAL: exception not rethrown") and leave the
    # segment; now it exits as Python does, and removes what it created.
    for what in ["rx.recv()", "sub.recv()", "rx.recv(timeout=0.05) or True", "server.receive()"]:
        name, bname, sname = unique("/shm-py-exit"), unique("/shm-py-exitb"), unique("/shm-py-exits")
        code = f"""
import shm, threading, time
rx = shm.Channel.create(shm.posix_create({name!r}, 1 << 16)).receiver()
b = shm.Broadcast.create(shm.posix_create({bname!r}, shm.Broadcast.segment_len(slots=8, max_message=64)), slots=8, max_message=64)
sub = b.subscriber()
server = shm.Service.create(shm.posix_create({sname!r}, shm.Service.segment_len())).server()
def loop():
    while {what}:
        pass
threading.Thread(target=loop, daemon=True).start()
time.sleep(0.2)
print("exiting", flush=True)
"""
        for _ in range(3):
            r = _run_python(code)
            assert r.returncode == 0, (what, r.returncode, r.stderr)
            assert "FATAL" not in r.stderr and "exiting" in r.stdout, (what, r.stderr)
            for n in (name, bname, sname):
                assert dev_shm(n) == [], (what, n)


def test_ctrl_c_while_a_worker_thread_waits_is_keyboard_interrupt_not_abort():
    name = unique("/shm-py-cc")
    code = f"""
import shm, threading
rx = shm.Channel.create(shm.posix_create({name!r}, 1 << 16)).receiver()
t = threading.Thread(target=rx.recv, daemon=True)
t.start()
print("ready", flush=True)
t.join()
"""
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode in (1, -signal.SIGINT), (p.returncode, err)
    assert "KeyboardInterrupt" in err and "FATAL" not in err, err
    assert dev_shm(name) == []


def test_asyncio_recv_send_and_cancellation_lose_nothing():
    import asyncio

    name = unique("/shm-py-aio")
    with shm.posix_create(name, 1 << 16) as mem:
        ch = shm.Channel.create(mem, capacity=4096)
        rx = ch.receiver()

        async def cancelled():
            # Cancelled while waiting (nothing sent yet): nothing is consumed.
            t = asyncio.ensure_future(rx.recv_async())
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

        asyncio.run(cancelled())
        p = peer("send-posix", name, 2000, 100)

        async def main():
            got = 0
            buf = bytearray(100)
            while got < 2000:
                if got % 2:
                    n = await asyncio.wait_for(rx.recv_into_async(buf), 30)
                    check(got, bytes(buf[:n]), 100)
                else:
                    check(got, await asyncio.wait_for(rx.recv_async(), 30), 100)
                got += 1
            with pytest.raises(shm.Closed):
                await asyncio.wait_for(rx.recv_async(), 30)

        asyncio.run(main())
        finish(p)


def test_async_methods_return_coroutines_that_keep_a_coroutines_promises():
    """`recv_async` & co. try in Rust on their first step (no Python frame when a message
    or room is there): to asyncio they are still coroutines, nothing is tried before the
    first step, and every way asyncio drives a coroutine works."""
    import asyncio
    import collections.abc

    mem = shm.anon_create(1 << 16)
    ch = shm.Channel.create(mem, capacity=4096)
    tx, rx = ch.sender(), ch.receiver()
    b = shm.Broadcast.create(shm.anon_create(shm.Broadcast.segment_len(slots=8, max_message=64)), slots=8, max_message=64)
    pub, sub = b.publisher(), b.subscriber()

    async def main():
        for c in (rx.recv_async(), rx.recv_into_async(bytearray(8)), tx.send_async(b"x"), sub.recv_async(), pub.publish_async(b"y")):
            assert asyncio.iscoroutine(c) and isinstance(c, collections.abc.Coroutine)
            c.close()  # never stepped: nothing tried, nothing taken or sent
        assert rx.try_recv() is None and sub.try_recv() is None

        # A message already there: returned by the first step (a tuple stays whole).
        await tx.send_async(b"one")
        await pub.publish_async(b"two")
        assert await rx.recv_async() == b"one"
        assert await sub.recv_async() == (0, b"two")

        # Cancelled before its first step, with a message waiting: nothing is taken.
        tx.send(b"kept")
        t = asyncio.ensure_future(rx.recv_async())
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert rx.try_recv() == b"kept"

        # Cancelled while it waits (past the Rust spin, in the loop's wait set), then a
        # message: the next await gets it.
        t = asyncio.ensure_future(rx.recv_into_async(bytearray(8)))
        await asyncio.sleep(0.01)
        assert not t.done()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        tx.send(b"later")
        buf = bytearray(8)
        assert await asyncio.wait_for(rx.recv_into_async(buf), 10) == 5 and bytes(buf[:5]) == b"later"

        # Through create_task, wait_for and gather; a timeout while waiting is asyncio's.
        t = asyncio.create_task(rx.recv_async())
        await asyncio.sleep(0)
        tx.send(b"task")
        assert await asyncio.wait_for(t, 10) == b"task"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rx.recv_async(), 0.02)
        tx.send(b"a")
        tx.send(b"b")
        assert await asyncio.gather(rx.recv_async(), rx.recv_async()) == [b"a", b"b"]

        # The coroutine protocol itself.
        c = rx.recv_async()
        with pytest.raises(TypeError):
            c.send(b"not None")  # a just-started coroutine takes only None
        c = rx.recv_async()
        with pytest.raises(ValueError):
            c.throw(ValueError("thrown before the first step"))
        with pytest.raises(RuntimeError):
            c.send(None)  # done: not stepped again
        c = rx.recv_async()
        with pytest.raises(KeyError):
            c.throw(KeyError)
        # An error of the try call is the coroutine's.
        tx.close()
        with pytest.raises(shm.Closed):
            await rx.recv_async()

    asyncio.run(main())


def test_asyncio_send_and_publish_wait_for_room():
    import asyncio

    mem = shm.anon_create(1 << 16)
    ch = shm.Channel.create(mem, capacity=512)
    tx = ch.sender()
    rx = ch.receiver()

    async def main():
        async def drain():
            got = []
            while len(got) < 200:
                got.append(await rx.recv_async())
            return got

        d = asyncio.ensure_future(drain())
        for i in range(200):
            await tx.send_async(i.to_bytes(4, "little") * 16)  # the ring holds a few
        got = await asyncio.wait_for(d, 30)
        assert [int.from_bytes(g[:4], "little") for g in got] == list(range(200))

    asyncio.run(main())


def test_asyncio_calls_to_a_server_process():
    import asyncio

    name = unique("/shm-py-aiosvc")
    size = shm.Service.segment_len(slots=16)
    with shm.posix_create(name, size) as mem:
        svc = shm.Service.create(mem, slots=16)
        server = peer("serve", name)
        client = svc.client()

        async def main():
            async def one(i):
                req = f"call {i}".encode()
                assert await client.call_async(req, timeout=30) == req[::-1]

            # Ten calls at once from one thread, then more, in turn.
            await asyncio.gather(*(one(i) for i in range(10)))
            for i in range(300):
                await one(i)
            # Cancelled: the request is cancelled, the next call is fine.
            t = asyncio.ensure_future(client.call_async(b"slow", timeout=30))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            await one(7)
            assert await client.call_async(b"stop", timeout=30) == b""

        asyncio.run(main())
        out, err = server.communicate(timeout=60)
        assert server.returncode == 0 and "ok" in out, err
        assert "cancelled" in err, err  # the server saw the cancel


def test_asyncio_server_receive_and_its_timeout():
    import asyncio

    svc = shm.Service.create(shm.anon_create(shm.Service.segment_len()))
    server, client = svc.server(), svc.client()

    async def main():
        with pytest.raises(shm.Timeout):
            await server.receive_async(timeout=0.05)
        pending = client.send_request(b"hi", timeout=10)
        req = await server.receive_async(timeout=10)
        assert req.data == b"hi"
        req.respond_last(b"yo")
        assert await pending.receive_async(timeout=10) == b"yo"

    asyncio.run(main())


def test_close_from_another_thread_wakes_a_blocked_wait():
    import threading

    mem = shm.anon_create(1 << 16)
    rx = shm.Channel.create(mem).receiver()
    b = shm.Broadcast.create(shm.anon_create(shm.Broadcast.segment_len(slots=8, max_message=64)), slots=8, max_message=64)
    sub = b.subscriber()
    listener = shm.Event.create(shm.anon_create(shm.Event.segment_len())).listener()
    server = shm.Service.create(shm.anon_create(shm.Service.segment_len())).server()
    for end, call in [
        (rx, lambda: rx.recv()),
        (rx, None),
        (sub, lambda: sub.recv()),
        (listener, lambda: listener.wait()),
        (server, lambda: server.receive()),
    ]:
        if call is None:
            continue
        got = []

        def run():
            try:
                call()
                got.append("returned")
            except shm.Closed as e:
                got.append(e)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        end.close()  # used to raise RuntimeError('Already borrowed')
        t.join(timeout=5)
        assert not t.is_alive() and len(got) == 1 and isinstance(got[0], shm.Closed), got
        assert time.monotonic() - t0 < 2
        with pytest.raises(shm.Error):
            call()  # the end is closed now
    # recv_into too, and close() on an idle end as before.
    rx2 = shm.Channel.create(shm.anon_create(1 << 16)).receiver()
    buf = bytearray(8)
    t = threading.Thread(target=lambda: pytest.raises(shm.Closed, rx2.recv_into, buf))
    t.start()
    time.sleep(0.1)
    rx2.close()
    t.join(timeout=5)
    assert not t.is_alive()


def test_a_view_kept_past_a_reserve_block_does_not_wedge_the_sender():
    ch = shm.Channel.create(shm.anon_create(1 << 16))
    tx, rx = ch.sender(), ch.receiver()
    with pytest.raises(BufferError):
        with tx.reserve(8) as slot:
            mv = memoryview(slot)
            mv[:] = b"x" * 8
    del mv  # the last view: the slot is given up now, not at garbage collection
    tx.send(b"after", timeout=1)
    assert rx.recv(timeout=1) == b"after"  # the abandoned slot sent nothing
    assert slot is not None  # the reservation object itself is still alive


def test_a_memfd_served_in_the_background_reaches_every_client():
    path = os.path.join(tempfile.mkdtemp(), "bg.sock")
    mem = shm.memfd_create(1 << 16)
    ch = shm.Channel.create(mem)
    with mem.serve_background(path) as serving:
        # An operator's look first (read-only), then the real consumer: both served.
        look = shm.memfd_connect(path, timeout=10, read_only=True)
        assert len(look) == 1 << 16
        p = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "helpers.py"), "recv-memfd", path, "100", "64"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert p.stdout.readline().strip() == "ready"
        tx = ch.sender()
        for i in range(100):
            tx.send(message(i, 64), timeout=30)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "ok" in out, err
    # Counted after each send, so final once closed (a client may hold its fd first).
    assert serving.served == 2
    assert not os.path.exists(path)  # closed: the socket file is gone


def test_memfd_connect_to_a_silent_server_and_ctrl_c_ends_it():
    import socket

    path = os.path.join(tempfile.mkdtemp(), "silent.sock")
    # A server that accepts and never sends: the connect used to ignore Ctrl-C for its
    # whole timeout.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    code = f"""
import shm
print("ready", flush=True)
shm.memfd_connect({path!r}, timeout=3600)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert time.monotonic() - t < 5 and "KeyboardInterrupt" in err, err
    listener.close()
    os.unlink(path)
    # No socket at all: NotFound at once, as before.
    with pytest.raises(shm.NotFound):
        shm.memfd_connect(path, timeout=1e30)


def test_the_wheel_is_a_stripped_release_build():
    import shm._shm as ext

    size = os.path.getsize(ext.__file__)
    assert size < 4 << 20, f"{ext.__file__} is {size} bytes: built with debug info?"


def test_a_channel_capacity_that_is_not_a_power_of_two_is_refused():
    # It used to be accepted, and create quietly laid a 512-byte ring.
    with pytest.raises(ValueError):
        shm.Channel.segment_len(1000)
    with pytest.raises(ValueError):
        shm.Channel.create(shm.anon_create(1 << 16), capacity=1000)


class _Stuck(Exception):
    pass


def test_every_public_callable_survives_hostile_arguments():
    # Every method of every class, with hostile arguments: a typed exception or a result,
    # never a PanicException (a BaseException that `except Exception` misses) or a crash.
    # A call that waits is ended by an alarm (every wait checks signals every 50 ms).
    import itertools

    panic = None
    try:
        import pyo3_runtime  # noqa: F401
    except ImportError:
        pass
    hostile = [None, -1, 0, 2**64, -(2**63), float("nan"), float("inf"), 1e30, "", "x" * 5000,
               b"", b"\xff" * 70000, bytearray(3), object()]

    def objects():
        chm = shm.Channel.create(shm.anon_create(1 << 16), capacity=4096)
        b = shm.Broadcast.create(shm.anon_create(shm.Broadcast.segment_len(slots=4, max_message=64)),
                                 slots=4, max_message=64)
        ev = shm.Event.create(shm.anon_create(shm.Event.segment_len()))
        svc = shm.Service.create(shm.anon_create(shm.Service.segment_len(max_request=64, max_response=64)),
                                 max_request=64, max_response=64)
        client = svc.client()
        return [chm, chm.sender(), chm.receiver(), b, b.publisher(), b.subscriber(), ev,
                ev.notifier(), ev.listener(), svc, client, svc.server(),
                client.send_request(b"x", timeout=0.5), shm.WaitSet(), shm.anon_create(4096),
                shm.memfd_create(4096)]

    def on_alarm(*_):
        raise _Stuck()

    old = signal.signal(signal.SIGALRM, on_alarm)
    calls = 0
    try:
        for obj in objects():
            for name in dir(obj):
                if name.startswith("_") or name in ("close", "fileno"):
                    continue
                attr = getattr(obj, name, None)
                if not callable(attr):
                    continue
                for n in range(0, 3):
                    for args in itertools.islice(itertools.product(hostile, repeat=n), 40):
                        calls += 1
                        signal.setitimer(signal.ITIMER_REAL, 0.2)
                        try:
                            attr(*args)
                        except _Stuck:
                            pass
                        except Exception:
                            pass
                        except BaseException as e:  # a PanicException lands here
                            panic = panic or f"{type(obj).__name__}.{name}{args!r}: {type(e).__name__}: {e}"
                        finally:
                            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert panic is None, panic
    assert calls > 1000


def test_the_spin_time_is_set_on_ends():
    # spin=0: sleep at once; inf: busy-poll; bad values are ValueError.
    ch = shm.Channel.create(shm.anon_create(1 << 16), rings=2)
    tx, rx = ch.sender(0, spin=0.0), ch.receiver(0, spin=float("inf"))
    tx.send(b"a")
    assert rx.recv(timeout=1) == b"a"
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            ch.receiver(1, spin=bad)
    b = shm.Broadcast.create(shm.anon_create(shm.Broadcast.segment_len(slots=4, max_message=8)),
                             slots=4, max_message=8)
    b.publisher(spin=0.0001).publish(b"x")
    assert b.subscriber(spin=0.0) is not None
    ev = shm.Event.create(shm.anon_create(shm.Event.segment_len()))
    assert ev.listener(spin=0.0).wait(timeout=0.01) == set()
    svc = shm.Service.create(shm.anon_create(shm.Service.segment_len()))
    server, client = svc.server(spin=0.0), svc.client(spin=0.0)
    pending = client.send_request(b"q", timeout=5)
    server.receive(timeout=5).respond_last(b"r")
    assert pending.receive(timeout=5) == b"r"


def test_fan_out_reaches_every_server_process():
    name = unique("/shm-py-fan")
    size = shm.Service.segment_len(slots=8)
    with shm.posix_create(name, size) as mem:
        svc = shm.Service.create(mem, slots=8)
        servers = [peer("serve", name), peer("serve", name)]
        client = svc.client()
        for _ in range(20):
            got = sorted(int(p.receive(timeout=30)) for p in client.send_request_to_all(b"who", timeout=30))
            assert got == sorted(s.pid for s in servers)
        for _ in servers:
            assert client.call(b"stop", timeout=30) == b""
        for s in servers:
            assert "ok" in finish(s)
        assert client.send_request_to_all(b"who", timeout=1) == []  # nobody serves now


def test_the_stubs_type_check():
    # The package's type stubs are valid (mypy), and a typed use of them checks: a
    # Segment of a struct format reads a tuple.
    code = """
import shm
mem = shm.anon_create(4096)
seg = shm.Segment.create(mem, (1, 2, 3), name="T", format="QQQ")
t: tuple = seg.read()
rx = shm.Channel.create(shm.anon_create(1 << 16)).receiver(spin=0.0)
v = rx.try_recv()
if v is not None:
    b: bytes = v
"""
    d = tempfile.mkdtemp()
    path = os.path.join(d, "use.py")
    with open(path, "w") as f:
        f.write(code)
    stubs = os.path.dirname(os.path.abspath(shm.__file__))
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", os.path.join(d, "c"), path],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": os.path.dirname(stubs)},
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_attach_to_another_programs_segment_says_so():
    from multiprocessing import shared_memory

    name = unique("shm-py-mp").lstrip("/")
    other = shared_memory.SharedMemory(name=name, create=True, size=1 << 16)
    try:
        with pytest.raises(shm.Error) as e:
            shm.Channel.attach(shm.posix_open("/" + name))
        # It said "still initialising ... (creator pid 0, not yet recorded)" after a 1 s
        # wait. No handle but ours holds it, so no creator of ours is writing a header:
        # refused at once (only that path says so; the wait's message names its time).
        assert "not a segment of ours" in str(e.value), str(e.value)
        assert "no creator of ours is writing one" in str(e.value), str(e.value)
    finally:
        other.close()
        other.unlink()


def c_message(seq, size):
    """Message `seq` as shm-c/tests/c/common.h makes it: the number, a checksum of the
    rest, then bytes derived from the number."""
    body = bytes((seq * 31 + i) & 0xFF for i in range(16, size))
    s = 0
    for b in body:
        s = (s * 1099511628211 + b) & 0xFFFFFFFFFFFFFFFF
    return seq.to_bytes(8, "little") + s.to_bytes(8, "little") + body


def test_a_c_publisher_to_a_python_subscriber(tmp_path):
    lib, cdir = os.environ.get("SHM_C_LIB"), os.environ.get("SHM_C_DIR")
    if not lib or not cdir:
        pytest.skip("SHM_C_LIB / SHM_C_DIR not set (the C library and shm-c's directory)")
    exe = tmp_path / "publisher"
    subprocess.run(
        ["cc", "-std=c11", "-O1", "-D_GNU_SOURCE", "-I", f"{cdir}/include", "-I", f"{cdir}/tests/c",
         f"{cdir}/tests/c/publisher.c", "-o", str(exe), lib, "-lpthread", "-ldl", "-lm"],
        check=True,
    )
    name = unique()
    n, size = 5000, 100
    pub = subprocess.Popen([str(exe), name, str(n), str(size), "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                b = shm.Broadcast.attach(shm.posix_open(name))
                break
            except shm.Error:
                assert time.monotonic() < deadline, "the C publisher's broadcast never appeared"
                time.sleep(0.01)
        sub = b.subscriber()
        got = []
        while True:
            try:
                k, data = sub.recv(timeout=30)
            except shm.Closed:
                break
            assert data == c_message(k, size), k
            got.append(k)
        assert got == list(range(n))
        sub.close()
        b.close()
        out, err = pub.communicate(timeout=30)
        assert pub.returncode == 0, err
        assert out.strip() == f"published {n}"
        assert dev_shm(name) == [], "the C publisher removed its segment"
    finally:
        if pub.poll() is None:
            pub.kill()
            pub.wait()
