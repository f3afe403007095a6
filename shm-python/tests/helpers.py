"""Peer processes for the tests: `python3 helpers.py ROLE ARGS...`, with the package on
PYTHONPATH. Each prints `ready` once in place."""

import os
import sys
import time
import zlib

import shm


def message(i, size):
    body = (i.to_bytes(8, "little") * (size // 8 + 1))[: size - 4]
    return body + zlib.crc32(body).to_bytes(4, "little")


def check(i, data, size):
    assert len(data) == size, (i, len(data))
    body, crc = data[:-4], data[-4:]
    assert body[:8] == i.to_bytes(8, "little"), (i, body[:8])
    assert zlib.crc32(body).to_bytes(4, "little") == crc, i


def main():
    role = sys.argv[1]
    if role == "send-posix":
        name, n, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        tx = shm.Channel.attach(shm.posix_open(name)).sender()
        print("ready", flush=True)
        for i in range(n):
            tx.send(message(i, size), timeout=30)
        tx.close()
    elif role == "recv-memfd":
        path, n, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        rx = shm.Channel.attach(shm.memfd_connect(path)).receiver()
        print("ready", flush=True)
        for i in range(n):
            check(i, rx.recv(timeout=30), size)
        print("ok", flush=True)
    elif role == "claim-sender":
        tx = shm.Channel.attach(shm.posix_open(sys.argv[2])).sender()
        print("ready", flush=True)
        time.sleep(600)
    elif role == "block-recv":
        rx = shm.Channel.attach(shm.posix_open(sys.argv[2])).receiver()
        print("ready", flush=True)
        rx.recv()
    elif role == "subscribe":
        name, n = sys.argv[2], int(sys.argv[3])
        sub = shm.Broadcast.attach(shm.posix_open(name)).subscriber()
        print("ready", flush=True)
        got = []
        while len(got) < n:
            k, data = sub.recv(timeout=30)
            assert int.from_bytes(data[:8], "little") == k
            got.append(k)
        assert got == list(range(got[0], got[0] + n)), got[:10]
        print("ok", flush=True)
    elif role == "seqlock-writer":
        name, n = sys.argv[2], int(sys.argv[3])
        lock = shm.SeqLock.attach(shm.posix_open(name), name="Triple", format="QQQ")
        print("ready", flush=True)
        for i in range(n):
            lock.store((i, i * 2, i * 3))
        print("ok", flush=True)
    elif role == "wait-open":
        # wait-open NAME: waits (for ever, in effect) for a segment that never comes.
        print("ready", flush=True)
        shm.posix_open(sys.argv[2], wait=3600)
    elif role == "serve-forever":
        # serve-forever PATH: serves a memfd to a client that never comes.
        mem = shm.memfd_create(4096)
        print("ready", flush=True)
        mem.serve(sys.argv[2], timeout=3600)
    elif role == "serve":
        # serve NAME: answers requests (the request reversed) until it takes b"stop";
        # b"die" kills it by SIGKILL while it holds the request; b"stream N" answers
        # with N responses and a last one.
        server = shm.Service.attach(shm.posix_open(sys.argv[2])).server()
        print("ready", flush=True)
        while True:
            req = server.receive(timeout=60)
            data = req.data
            if data == b"stop":
                req.respond_last(b"")
                break
            if data == b"die":
                os.kill(os.getpid(), 9)
            if data == b"who":
                req.respond_last(str(os.getpid()).encode())
                continue
            if data == b"slow":
                # Answers after 0.5 s, if its client still wants it.
                time.sleep(0.5)
                cancelled = req.is_cancelled()
                try:
                    req.respond_last(b"late")
                except shm.Cancelled:
                    cancelled = True
                print("cancelled" if cancelled else "answered", file=sys.stderr, flush=True)
                continue
            if data.startswith(b"stream "):
                for i in range(int(data[7:])):
                    req.respond(i.to_bytes(4, "little"))
                req.respond_last(b"end")
                continue
            req.respond_last(data[::-1])
        print("ok", flush=True)
    elif role == "notify":
        # notify NAME N ACK_NAME DIE: notifies id i % 64 for i < N, each after the test's
        # answer on the event ACK_NAME (so every notify finds the listener asleep or
        # busy, never merged); then, if DIE, notifies 63 and dies by SIGKILL.
        name, n, ack, die = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
        notifier = shm.Event.attach(shm.posix_open(name)).notifier()
        acks = shm.Event.attach(shm.posix_open(ack)).listener()
        print("ready", flush=True)
        for i in range(n):
            notifier.notify(i % 64)
            assert acks.wait(timeout=30) == {i % 64}, i
        if die:
            notifier.notify(63)
            os.kill(os.getpid(), 9)
        print("ok", flush=True)
    elif role == "feed":
        # feed CHANNEL EVENT N: sends N messages on the channel and notifies id 1 on the
        # event after each, with a pause, for a wait set in the test.
        chan, ev, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        tx = shm.Channel.attach(shm.posix_open(chan)).sender()
        notifier = shm.Event.attach(shm.posix_open(ev)).notifier()
        print("ready", flush=True)
        for i in range(n):
            tx.send(message(i, 64), timeout=30)
            notifier.notify(1)
            time.sleep(0.002)
        tx.close()
        print("ok", flush=True)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
