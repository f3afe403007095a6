"""asyncio for the shm ends: the coroutines behind ``recv_async``, ``call_async``, ...

How an awaiting call waits: each running event loop has one ``WaitSet``, whose
``fileno()`` the loop watches (``loop.add_reader``). An awaiting receive first tries
(``try_recv``: a message already there costs no wait), then attaches its end to the
loop's set and awaits a future that the loop's reader callback resolves when the set
reports the end ready. No thread per waiting call: the set's one watcher thread sleeps in
``futex_waitv`` over every attached end and writes an ``eventfd`` when one is ready (a
wake-up costs that thread's wake-up, the ``eventfd`` write and the loop's return from
``epoll``). The message is taken by the try call that follows the wake-up, in the task
itself, so a cancelled await never consumes one.

The coroutine an ``_async`` method of a channel or broadcast end returns is Rust's
``Attempt`` (``src/aio.rs``): its first step calls the end's try method from Rust (a
receive again for up to 20 us, so that a reply that comes at once costs no wake-up), and
only when it must wait does it hand over to the coroutine here (``spun=True``: look once,
then park), which it drives as ``yield from`` would. Calls with a timeout (services) are
the coroutines here throughout; they try for up to 20 us (`SPIN_NS`) the same way.

Waits for room (a full channel, a reliable publisher's slowest subscriber) have no word
to watch from the loop: they poll, from 50 us up to 2 ms apart, with the loop free in
between.
"""

import asyncio
import time
import weakref

from . import _shm

_waiters = weakref.WeakKeyDictionary()

# How long an awaiting call tries again before it parks with the loop's wait set, in ns:
# a reply that comes within it costs no wake-up (the Rust futures spin 50 us likewise;
# this is shorter, since the loop runs no other task meanwhile).
SPIN_NS = 20_000


def _spin(try_once):
    """Calls `try_once` until it returns something other than None, for at most
    `SPIN_NS`; returns what it returned last."""
    v = try_once()
    if v is not None or SPIN_NS <= 0:
        return v
    end = time.perf_counter_ns() + SPIN_NS
    while v is None and time.perf_counter_ns() < end:
        v = try_once()
    return v


class _LoopWaiter:
    """One loop's wait set and the futures waiting on its ends."""

    def __init__(self, loop):
        # Weak: the loop holds this waiter (through its reader), not the other way round,
        # so a closed loop and its set (and the set's watcher thread) go together.
        self._loop = weakref.ref(loop)
        self.ws = _shm.WaitSet()
        self.waiting = {}  # id(end) -> (end, [futures])
        loop.add_reader(self.ws.fileno(), self._ready)

    def wait(self, end):
        """A future resolved once `end` is ready (or raising TypeError/Error when the
        set cannot take it: the caller then polls)."""
        key = id(end)
        entry = self.waiting.get(key)
        if entry is None:
            self.ws.attach(end)
            entry = self.waiting[key] = (end, [])
        fut = self._loop().create_future()
        entry[1].append(fut)
        fut.add_done_callback(lambda f, key=key: self._done(key, f))
        return fut

    def _done(self, key, fut):
        entry = self.waiting.get(key)
        if entry is None:
            return
        if fut in entry[1]:
            entry[1].remove(fut)
        if not entry[1]:
            # Nobody awaits it any more: a level-triggered set would keep reporting it.
            del self.waiting[key]
            self.ws.detach(entry[0])

    def _ready(self):
        for end in self.ws.try_wait():
            entry = self.waiting.get(id(end))
            if entry is None:
                self.ws.detach(end)
                continue
            for f in list(entry[1]):
                if not f.done():
                    f.set_result(None)


def _waiter():
    loop = asyncio.get_running_loop()
    w = _waiters.get(loop)
    if w is None:
        w = _waiters[loop] = _LoopWaiter(loop)
    return w


async def _until_ready(end, timeout=None):
    """Waits until the loop's set reports `end` ready (at most `timeout` seconds; then
    returns, and the caller's try call says what the deadline means)."""
    try:
        fut = _waiter().wait(end)
    except (TypeError, _shm.Error):
        # The set is full (127 ends): poll instead.
        await asyncio.sleep(0.001)
        return
    if timeout is None:
        await fut
        return
    try:
        await asyncio.wait_for(fut, max(timeout, 0.0))
    except asyncio.TimeoutError:
        pass


async def _poll_until(try_once):
    """Calls `try_once` until it does not raise `shm.Full`, sleeping in between."""
    delay = 0.00005
    while True:
        try:
            return try_once()
        except _shm.Full:
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.002)


async def recv_async(end, spun=False):
    # `spun`: the Rust first step (`Attempt`) already tried and spun; look once, then wait.
    while True:
        v = end.try_recv() if spun else _spin(end.try_recv)
        spun = False
        if v is not None:
            return v
        await _until_ready(end)


async def recv_into_async(end, buffer, spun=False):
    while True:
        n = end.try_recv_into(buffer) if spun else _spin(lambda: end.try_recv_into(buffer))
        spun = False
        if n is not None:
            return n
        await _until_ready(end)


async def send_async(tx, data):
    return await _poll_until(lambda: tx.try_send(data))


async def publish_async(pub, data):
    return await _poll_until(lambda: pub.try_publish(data))


def _left(deadline):
    return None if deadline is None else deadline - asyncio.get_running_loop().time()


async def receive_async(pending, timeout=None):
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    while True:
        v = _spin(pending.try_receive)
        if v is not None:
            return v
        left = _left(deadline)
        if left is not None and left <= 0:
            raise _shm.Timeout(f"timed out after {timeout:.3f} s")
        # The request's own deadline ends it too: its try call raises `shm.Timeout`
        # then; the set is looked at again every 20 ms for it.
        await _until_ready(pending, 0.02 if left is None else min(left, 0.02))


async def call_async(client, data, timeout=None):
    pending = client.send_request(data, timeout)
    try:
        return await receive_async(pending, timeout)
    finally:
        # Cancelled or done: the request's slot goes at once (a cancel for the server).
        pending.close()


async def server_receive_async(server, timeout=None):
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    while True:
        req = server.try_receive()
        if req is not None:
            return req
        left = _left(deadline)
        if left is not None and left <= 0:
            raise _shm.Timeout(f"timed out after {timeout:.3f} s")
        await _until_ready(server, left)
