from typing import Any, Generic, List, Optional, Set, Tuple, TypeVar, Union, overload

class Error(Exception):
    """Every error of the shm package."""
    ...
class Timeout(Error):
    """A wait ran out of time."""
    ...
class Closed(Error):
    """The other side closed cleanly."""
    ...
class PeerDied(Error):
    """The other side's process died without closing (`pid`: its pid)."""
    pid: int
class Lagged(Error):
    """A broadcast subscriber fell behind: `missed` messages are gone."""
    missed: int
class UpstreamLost(Error):
    """An imported broadcast's exporter is gone for now; messages resume when it returns."""
    ...
class Evicted(Error):
    """The reliable publisher evicted this subscriber."""
    ...
class SchemaMismatch(Error):
    """The segment holds another record type."""
    ...
class ReadOnly(Error):
    """The mapping is read-only."""
    ...
class Truncated(Error):
    """The segment was truncated under us."""
    ...
class Corrupt(Error):
    """A peer wrote a value no honest peer writes."""
    ...
class Full(Error):
    """No room now (a try call)."""
    ...
class Empty(Error):
    """No message now (a try call)."""
    ...
class NotFound(Error):
    """No segment or server by that name or path."""
    ...
class AlreadyExists(Error):
    """A segment by that name exists already."""
    ...
class PermissionDenied(Error):
    """Not ours to open: another user's, a mode other than 0600, or a peer of another user."""
    ...
class NoSpace(Error):
    """No room for the segment in /dev/shm (a tmpfs)."""
    ...

class Memory:
    """Shared memory of one backend, not yet laid out: hand it to `Channel.create`,
    `Broadcast.create` or `Segment.create` (which take it over), or their `attach`.
    """
    @staticmethod
    def posix_create(name: str, size: int) -> "Memory":
        """Creates a named POSIX segment of `size` bytes (`/dev/shm/NAME`); it is removed
        when what is laid out in it is closed (or this memory is dropped unused).
        """
        ...
    @staticmethod
    def posix_open(name: str, read_only: bool = False) -> "Memory":
        """Opens an existing named POSIX segment (read-only with `read_only=True`). With
        `wait=` seconds, waits that long for it to appear (a name not created yet, or a
        segment its creator has not sized yet), releasing the GIL; Ctrl-C interrupts it;
        then `shm.NotFound`. A layout's attach then waits for the creator to finish
        laying it out.
        """
        ...
    @staticmethod
    def memfd_create(size: int, read_only_peers: bool = False) -> "Memory":
        """Creates a sealed memfd of `size` bytes; `serve(path)` passes it to a client.
        `read_only_peers=True` seals it against writes by the clients.
        """
        ...
    @staticmethod
    def memfd_connect(path: str, timeout: float = 10.0, read_only: bool = False) -> "Memory":
        """Connects to a memfd server's socket and maps what it passes (read-only with
        `read_only=True`), waiting at most `timeout` seconds.
        """
        ...
    @staticmethod
    def anon_create(size: int) -> "Memory":
        """Anonymous shared memory of `size` bytes: shared with children made by
        `os.fork()` after this call.
        """
        ...
    def serve(self, path: str, timeout: float = 10.0) -> int:
        """Serves this memfd on a Unix socket at `path` to one client, waiting at most
        `timeout` seconds for it; returns the client's pid.
        """
        ...
    def serve_background(self, path: str) -> "Serving":
        """Serves this memfd on a Unix socket at `path` to every client that connects, from
        a thread of its own, until the returned `Serving` is closed (or dropped): any
        number of consumers, and an operator's `shm-demo ls --socket` look, each get it.
        """
        ...
    @property
    def backend(self) -> str:
        """`posix`, `memfd` or `anon`."""
        ...
    @property
    def name(self) -> Optional[str]:
        """The segment's name (posix), or None."""
        ...
    def __len__(self) -> int: ...
    def close(self) -> None:
        """Unmaps (and, for a segment this memory created, removes) it now, unless it was
        handed to a layout.
        """
        ...
    def __enter__(self) -> "Memory": ...
    def __exit__(self, *exc: Any) -> None: ...

def posix_create(name: str, size: int) -> Memory:
    """Creates a named POSIX segment of `size` bytes (`/dev/shm/NAME`); it is removed
    when what is laid out in it is closed (or this memory is dropped unused).
    """
    ...
def posix_open(name: str, read_only: bool = False) -> Memory:
    """Opens an existing named POSIX segment (read-only with `read_only=True`). With
    `wait=` seconds, waits that long for it to appear (a name not created yet, or a
    segment its creator has not sized yet), releasing the GIL; Ctrl-C interrupts it;
    then `shm.NotFound`. A layout's attach then waits for the creator to finish
    laying it out.
    """
    ...
def memfd_create(size: int, read_only_peers: bool = False) -> Memory:
    """Creates a sealed memfd of `size` bytes; `serve(path)` passes it to a client.
    `read_only_peers=True` seals it against writes by the clients.
    """
    ...
def memfd_connect(path: str, timeout: float = 10.0, read_only: bool = False) -> Memory:
    """Connects to a memfd server's socket and maps what it passes (read-only with
    `read_only=True`), waiting at most `timeout` seconds.
    """
    ...
def anon_create(size: int) -> Memory:
    """Anonymous shared memory of `size` bytes: shared with children made by
    `os.fork()` after this call.
    """
    ...

class RawRecord:
    """A record segment whose type Python describes: a schema (name, version, size,
    alignment) checked against the header exactly as Rust's `Record` is.
    """
    @staticmethod
    def create(mem: Memory, name: str, version: int, size: int, align: int, initial: Any) -> "RawRecord":
        """Lays a record segment into fresh memory holding `initial` (exactly `size` bytes)."""
        ...
    @staticmethod
    def attach(mem: Memory, name: str, version: int, size: int, align: int) -> "RawRecord":
        """Attaches to a record segment, checking its schema against this one."""
        ...
    @staticmethod
    def attach_foreign(mem: Memory, size: int) -> "RawRecord":
        """Attaches to a segment with no header (the record at offset 0: the tutorial's, or
        Python's `multiprocessing.shared_memory`); only its size can be checked.
        """
        ...
    def read(self) -> bytes:
        """A copy of the record's bytes."""
        ...
    def write(self, value: Any) -> None:
        """Overwrites the record with `value` (exactly the record's size)."""
        ...
    def close(self) -> None:
        """Closes the segment (a posix segment this process created is removed)."""
        ...

_R = TypeVar("_R")

class Segment(Generic[_R]):
    """A typed record in shared memory, its type checked against the header exactly as
    Rust's ``Record`` is: the name, version, size and alignment must match what the
    writer declared (``SchemaMismatch`` otherwise, with the same text as in Rust).

    The record is given by a ``struct`` format (``format="QQQ"``) or a numpy dtype
    (``dtype=np.dtype([("col1", "<u8"), ...])``), in C layout. ``read()`` returns a tuple
    (struct) or a numpy record (dtype); ``write(value)`` takes the same.
    """
    @overload
    @classmethod
    def create(cls, mem: Memory, value: Any, *, name: str, version: int = 1, format: str, dtype: None = None) -> "Segment[Tuple[Any, ...]]":
        """Lays a record segment into ``mem`` holding ``value``."""
        ...
    @overload
    @classmethod
    def create(cls, mem: Memory, value: Any, *, name: str, version: int = 1, format: None = None, dtype: Any) -> "Segment[Any]":
        """Lays a record segment into ``mem`` holding ``value``."""
        ...
    @overload
    @classmethod
    def attach(cls, mem: Memory, *, name: str, version: int = 1, format: str, dtype: None = None) -> "Segment[Tuple[Any, ...]]":
        """Attaches to a record segment, checking its schema."""
        ...
    @overload
    @classmethod
    def attach(cls, mem: Memory, *, name: str, version: int = 1, format: None = None, dtype: Any) -> "Segment[Any]":
        """Attaches to a record segment, checking its schema."""
        ...
    @overload
    @classmethod
    def attach_foreign(cls, mem: Memory, *, format: str, dtype: None = None) -> "Segment[Tuple[Any, ...]]":
        """A segment with no header (the tutorial's, Python's
        ``multiprocessing.shared_memory``): the record at offset 0, only its size checked.
        """
        ...
    @overload
    @classmethod
    def attach_foreign(cls, mem: Memory, *, format: None = None, dtype: Any) -> "Segment[Any]":
        """A segment with no header (the tutorial's, Python's
        ``multiprocessing.shared_memory``): the record at offset 0, only its size checked.
        """
        ...
    def read(self) -> _R:
        """A copy of the record."""
    def write(self, value: _R) -> None:
        """Overwrites the record."""
    def close(self) -> None:
        """Closes the segment (a posix segment this process created is removed)."""
        ...
    def __enter__(self) -> "Segment[_R]": ...
    def __exit__(self, *exc: Any) -> None: ...

class RawSeqLock:
    """A seqlock record whose type Python describes: readers in other processes never see a
    half-written value.
    """
    @staticmethod
    def create(mem: Memory, name: str, version: int, size: int, align: int, initial: Any) -> "RawSeqLock":
        """Lays a seqlock segment into fresh memory holding `initial` (exactly `size` bytes)."""
        ...
    @staticmethod
    def attach(mem: Memory, name: str, version: int, size: int, align: int) -> "RawSeqLock":
        """Attaches to a seqlock segment, checking its schema."""
        ...
    def load(self) -> bytes:
        """A consistent snapshot of the record's bytes (the GIL is released while it retries)."""
        ...
    def store(self, value: Any) -> None:
        """Replaces the record; readers see the old or the new value, never a mix."""
        ...
    def close(self) -> None:
        """Closes the segment (a posix segment this process created is removed)."""
        ...

class SeqLock(Segment):
    """A typed record behind a seqlock: ``load()`` returns a consistent snapshot (never a
    mix of two stores, whatever the writers do), ``store(value)`` replaces it. A writer
    killed in the middle of a store is reported (``shm.Error``: the writer died), and the
    next store repairs it. Described by a ``struct`` format or a numpy dtype, checked
    against the header like ``Segment``.
    """
    def load(self) -> Any:
        """A consistent snapshot of the record."""
        ...
    def store(self, value: Any) -> None:
        """Replaces the record; readers see the old or the new value, never a mix."""
        ...

class Reservation:
    """Room for one message in the ring, writable in place: `memoryview(res)` (or the
    `view()` shorthand) is a writable view of exactly the message's bytes, the writer's
    own slot, which no reader sees until `commit()`. Release every view before
    committing (`with memoryview(res) as v:` does): `commit()` raises `BufferError`
    while a view is alive, and after the commit (or `abandon()`) no new view can be
    made, so a view never outlives the slot. Used as a context manager it commits on a
    clean exit and abandons on an exception.
    """
    def view(self) -> memoryview:
        """A writable memoryview of the slot (the same as `memoryview(self)`)."""
        ...
    def __len__(self) -> int: ...
    def commit(self) -> None:
        """Publishes the message."""
        ...
    def abandon(self) -> None:
        """Gives the slot up: nothing is sent."""
        ...
    def __enter__(self) -> "Reservation": ...
    def __exit__(self, *exc: Any) -> None: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class Sender:
    """The sending end of a ring."""
    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        """Sends a copy of `data` (any bytes-like object), waiting for room at most
        `timeout` seconds (None: as long as it takes). The GIL is released meanwhile.
        """
        ...
    def reserve(self, n: int, timeout: Optional[float] = None) -> Reservation:
        """Room for an `n`-byte message, written in place: a `Reservation` whose memoryview
        is the slot (zero-copy), committed with `commit()`. Waits for room at most
        `timeout` seconds. One reservation at a time per sender.
        """
        ...
    def try_send(self, data: Any) -> None:
        """Sends if there is room now (`shm.Full` otherwise)."""
        ...
    async def send_async(self, data: Any) -> None:
        """`send`, awaited (asyncio): a full ring is polled (from 50 µs up to 2 ms apart)
        while the loop runs other tasks. Cancellation safe: nothing is sent unless the
        await completes.
        """
        ...
    @property
    def max_message(self) -> int:
        """The largest message this ring carries."""
        ...
    def close(self) -> None:
        """Closes the end (the receiver then gets `shm.Closed` once it has read everything).
        Refused while a reservation is outstanding (its view points into the ring).
        """
        ...
    def __enter__(self) -> "Sender": ...
    def __exit__(self, *exc: Any) -> None: ...

class Receiver:
    """The receiving end of a ring."""
    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message as `bytes`, waiting at most `timeout` seconds (None: as long as
        it takes). `shm.Closed` once the sender closed and everything was read;
        `shm.PeerDied` if its process died. The GIL is released meanwhile; Ctrl-C raises
        `KeyboardInterrupt` within 50 ms.
        """
        ...
    def recv_into(self, buffer: Any, timeout: Optional[float] = None) -> int:
        """Receives the next message into `buffer` (any writable bytes-like object: a
        bytearray, a numpy array, a memoryview of one) with one copy; returns its length.
        A message longer than the buffer raises `ValueError` and stays in the ring.
        """
        ...
    def try_recv(self) -> Optional[bytes]:
        """The next message if there is one now; None when there is none (a poll raises
        nothing; `shm.Closed` / `shm.PeerDied` once the sender is gone and all was read).
        """
        ...
    def try_recv_into(self, buffer: Any) -> Optional[int]:
        """The next message if there is one now, copied into `buffer`; returns its length
        (None when there is none: a poll raises nothing). A message longer than the buffer
        raises `ValueError` and stays in the ring.
        """
        ...
    async def recv_async(self) -> bytes:
        """`recv`, awaited (asyncio): the next message's bytes. Its first step tries at once,
        spinning up to 20 µs; then the receiver is watched by the running loop's wait set
        (one per loop, through its `fileno()`; no thread per call). Cancellation safe: a
        message is taken only when the await completes.
        """
        ...
    async def recv_into_async(self, buffer: Any) -> int:
        """`recv_into`, awaited (asyncio): the next message into `buffer`; its length."""
        ...
    def close(self) -> None:
        """Closes the end; from another thread too: a `recv` waiting on it raises
        `shm.Closed` within 50 ms.
        """
        ...
    def __enter__(self) -> "Receiver": ...
    def __exit__(self, *exc: Any) -> None: ...

class Channel:
    """A channel segment: one or two single-producer single-consumer rings."""
    @staticmethod
    def create(mem: Memory, rings: int = 1, capacity: Optional[int] = None) -> "Channel":
        """Lays a channel into fresh memory: `rings` (1 or 2), `capacity` bytes per ring (a
        power of two; default: as large as the memory allows).
        """
        ...
    @staticmethod
    def segment_len(capacity: int, rings: int = 1) -> int:
        """The memory a channel of `rings` rings of `capacity` bytes needs."""
        ...
    @staticmethod
    def attach(mem: Memory) -> "Channel":
        """Attaches to a channel segment, validating it."""
        ...
    def sender(self, ring: int = 0, spin: Optional[float] = None) -> Sender:
        """The sending end of `ring`. `spin=` seconds a full ring is spun on before the
        sender sleeps (default 50 µs; 0: sleep at once; `inf`: busy-poll).
        """
        ...
    def receiver(self, ring: int = 0, spin: Optional[float] = None) -> Receiver:
        """The receiving end of `ring`. `spin=` seconds an empty ring is spun on before the
        receiver sleeps (default 50 µs; 0: sleep at once; `inf`: busy-poll).
        """
        ...
    @property
    def max_message(self) -> int:
        """The largest message a ring carries."""
        ...
    def close(self) -> None:
        """Closes this handle (ends handed out stay usable; the memory goes with the last)."""
        ...
    def __enter__(self) -> "Channel": ...
    def __exit__(self, *exc: Any) -> None: ...

class Notifier:
    """A notifying end: `notify(id)` never waits."""
    def notify(self, id: int) -> None:
        """Notifies `id` (wakes the listener if it sleeps). `shm.Closed` once the listener
        closed, `shm.PeerDied` if its process died; `ValueError` for an id at or above
        `max_ids`.
        """
        ...
    def close(self) -> None:
        """Closes the end (frees its line)."""
        ...
    def __enter__(self) -> "Notifier": ...
    def __exit__(self, *exc: Any) -> None: ...

class Listener:
    """The listening end: `wait()` returns the set of ids notified since the last look."""
    def wait(self, timeout: Optional[float] = None) -> Set[int]:
        """The ids notified since the last look, as a `set`, waiting at most `timeout`
        seconds (None: as long as it takes). On timeout it returns an empty set (not an
        error). `shm.PeerDied` once per notifier whose process died. The GIL is released
        meanwhile; Ctrl-C raises `KeyboardInterrupt` within 50 ms.
        """
        ...
    def try_wait(self) -> Set[int]:
        """The ids notified since the last look, now (an empty set when none)."""
        ...
    def close(self) -> None:
        """Closes the end; from another thread too: a `wait` on it raises `shm.Closed`
        within 50 ms.
        """
        ...
    def __enter__(self) -> "Listener": ...
    def __exit__(self, *exc: Any) -> None: ...

class Event:
    """An event segment: notifications by id from many notifiers to one listener."""
    @staticmethod
    def create(mem: Memory, max_ids: int = 64, max_notifiers: int = 16) -> "Event":
        """Lays an event into fresh memory: ids `0 .. max_ids` (at most 4096), up to
        `max_notifiers` notifier processes at once (at most 1024).
        """
        ...
    @staticmethod
    def segment_len(max_ids: int = 64, max_notifiers: int = 16) -> int:
        """The memory an event with these options needs."""
        ...
    @staticmethod
    def attach(mem: Memory) -> "Event":
        """Attaches to an event segment, validating it."""
        ...
    def notifier(self) -> Notifier:
        """A notifying end (takes a notifier line)."""
        ...
    def listener(self, spin: Optional[float] = None) -> Listener:
        """The listening end (one per event; `spin=` as for a channel's receiver)."""
        ...
    @property
    def max_ids(self) -> int:
        """Ids `0 .. max_ids` can be notified."""
        ...
    def close(self) -> None:
        """Closes this handle (ends handed out stay usable)."""
        ...
    def __enter__(self) -> "Event": ...
    def __exit__(self, *exc: Any) -> None: ...

class WaitSet:
    """Waits on many ends at once (level-triggered: an end with something unread stays
    ready).
    """
    def __init__(self) -> None: ...
    def attach(
        self, obj: Union["Receiver", "Subscriber", Listener, "Server", "PendingResponse"]
    ) -> None:
        """Attaches a `Receiver`, `Subscriber`, `Listener`, `Server` or `PendingResponse`
        (at most 127). An end whose
        peer closed or died is reported ready; its own `try_*` call raises the error.
        """
        ...
    def detach(self, obj: Any) -> None:
        """Detaches `obj` (not attached: ignored)."""
        ...
    def wait(self, timeout: Optional[float] = None) -> List[Any]:
        """The attached objects that are ready, waiting at most `timeout` seconds (None: as
        long as it takes); an empty list on timeout. The GIL is released meanwhile;
        Ctrl-C raises `KeyboardInterrupt` within 50 ms.
        """
        ...
    def try_wait(self) -> List[Any]:
        """The attached objects that are ready now (empties `fileno()`'s readiness)."""
        ...
    def fileno(self) -> int:
        """A file descriptor readable while anything attached is ready: for `selectors`,
        `loop.add_reader` (call `try_wait()` when it is readable). A watcher thread is
        started by the first call and ends with the set.
        """
        ...
    def __len__(self) -> int: ...

class Publisher:
    """The publishing end of a broadcast."""
    def publish(self, data: Any, timeout: Optional[float] = None) -> None:
        """Publishes a copy of `data`. Reliable: waits for room (evicting the dead and the
        stuck), at most `timeout` seconds. Lossy: never waits.
        """
        ...
    def try_publish(self, data: Any) -> None:
        """Publishes a copy of `data` if it can now: `shm.Full` when a reliable ring has no
        room without waiting (lossy never waits).
        """
        ...
    async def publish_async(self, data: Any) -> None:
        """`publish`, awaited (asyncio): a reliable publisher waiting for its slowest
        subscriber polls (from 50 µs up to 2 ms apart) while the loop runs other tasks.
        """
        ...
    def wait_for_subscribers(self, n: int, timeout: float = 10.0) -> int:
        """Waits until `n` subscribers hold a line, at most `timeout` seconds."""
        ...
    def close(self) -> None:
        """Closes the end (subscribers get `shm.Closed` once they read everything)."""
        ...
    def __enter__(self) -> "Publisher": ...
    def __exit__(self, *exc: Any) -> None: ...

class Subscriber:
    """A subscriber of a broadcast."""
    def recv(self, timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """The next message: `(number, bytes)`. `shm.Lagged` (`.missed`: how many were
        missed) when it fell behind a lossy ring; `shm.Closed`, `shm.PeerDied`,
        `shm.Evicted`.
        """
        ...
    def recv_into(self, buffer: Any, timeout: Optional[float] = None) -> Tuple[int, int]:
        """Receives the next message into `buffer` with one copy: `(number, length)`. A
        message longer than the buffer raises `ValueError` and stays for the next call.
        """
        ...
    def try_recv(self) -> Optional[Tuple[int, bytes]]:
        """The next message if there is one now: `(number, bytes)`; None when there is none
        (a poll raises nothing).
        """
        ...
    def try_recv_into(self, buffer: Any) -> Optional[Tuple[int, int]]:
        """The next message if there is one now, copied into `buffer`: `(number, length)`;
        None when there is none (a poll raises nothing). A message longer than the buffer raises `ValueError` and
        stays for the next call.
        """
        ...
    async def recv_async(self) -> Tuple[int, bytes]:
        """`recv`, awaited (asyncio): `(number, bytes)` of the next message. Watched by the
        running loop's wait set; cancellation safe.
        """
        ...
    @property
    def next_message(self) -> int:
        """The number of the next message it will receive."""
        ...
    def close(self) -> None:
        """Leaves the broadcast; from another thread too: a `recv` waiting on it raises
        `shm.Closed` within 50 ms.
        """
        ...
    def __enter__(self) -> "Subscriber": ...
    def __exit__(self, *exc: Any) -> None: ...

class Broadcast:
    """A broadcast segment: one publisher, many subscribers."""
    @staticmethod
    def create(mem: Memory, slots: int = 64, max_message: int = 4080, lossy: bool = False, max_subscribers: int = 64, evict_timeout: float = 1.0) -> "Broadcast":
        """Lays a broadcast into fresh memory (size it with `Broadcast.segment_len`)."""
        ...
    @staticmethod
    def segment_len(slots: int = 64, max_message: int = 4080, lossy: bool = False, max_subscribers: int = 64, evict_timeout: float = 1.0) -> int:
        """The memory a broadcast with these options needs."""
        ...
    @staticmethod
    def attach(mem: Memory) -> "Broadcast":
        """Attaches to a broadcast segment (read-only memory makes a lossy read-only
        subscriber possible).
        """
        ...
    def publisher(self, spin: Optional[float] = None) -> Publisher:
        """The publishing end (`spin=` as for a channel's ends)."""
        ...
    def subscriber(self, spin: Optional[float] = None) -> Subscriber:
        """Joins as a subscriber: the first message it receives is the next one published.
        `spin=` seconds it spins before it sleeps (default 50 µs; 0: sleep at once;
        `inf`: busy-poll).
        """
        ...
    def subscribe(self) -> Subscriber:
        """Deprecated name of `subscriber()` (one name per end); warns `DeprecationWarning`."""
        ...
    def subscriber_count(self) -> int:
        """Subscribers holding a line now."""
        ...
    def close(self) -> None:
        """Closes this handle."""
        ...
    def __enter__(self) -> "Broadcast": ...
    def __exit__(self, *exc: Any) -> None: ...

class Cancelled(Error):
    """The request's client cancelled it or died: nothing more reaches it."""
    ...

class ServerError(Error):
    """The server answered the request with an error code (`code`)."""
    code: int

class Request:
    """A request a server took: `data`, `deadline`, `client_pid`, and the ways to answer.
    Dropping it unanswered finishes it (the client's call raises `shm.Closed`).
    """
    @property
    def data(self) -> bytes:
        """The request's bytes (copied once out of shared memory)."""
        ...
    @property
    def deadline(self) -> Optional[float]:
        """The request's deadline on the `time.monotonic()` clock (None: none)."""
        ...
    @property
    def remaining(self) -> Optional[float]:
        """Seconds left until the deadline (None: none; 0.0: passed)."""
        ...
    @property
    def client_pid(self) -> int:
        """The client's pid."""
        ...
    @property
    def id(self) -> int:
        """The request's id."""
        ...
    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request or died."""
        ...
    def respond(self, data: Any) -> None:
        """Sends one response of a stream (more may follow); waits while the client has
        unread responses (bounded by the deadline). `shm.Cancelled` once the client went
        away.
        """
        ...
    def respond_last(self, data: Any) -> None:
        """Sends the last (or only) response and finishes the request."""
        ...
    def respond_error(self, code: int) -> None:
        """Answers with an error code (the client raises `shm.ServerError`, `.code` set)
        and finishes the request.
        """
        ...
    def close(self) -> None:
        """Finishes the request unanswered (the client raises `shm.Closed`)."""
        ...
    def __enter__(self) -> "Request": ...
    def __exit__(self, *exc: Any) -> None: ...

class PendingResponse:
    """A request sent: receive its responses (`receive()`, or iterate). Closing it (or
    dropping it) cancels the request; its server sees `is_cancelled()`.
    """
    def receive(self, timeout: Optional[float] = None) -> bytes:
        """The next response's bytes, waiting at most `timeout` seconds (and never past the
        request's deadline). `shm.Closed` once the stream is over.
        """
        ...
    def try_receive(self) -> Optional[bytes]:
        """The next response's bytes if there is one now, else None (a poll raises
        nothing); `shm.Closed` once the stream is over, `shm.Timeout` past the deadline.
        """
        ...
    async def receive_async(self, timeout: Optional[float] = None) -> bytes:
        """The next response, awaited (asyncio; see `Client.call_async`)."""
        ...
    def __iter__(self) -> "PendingResponse": ...
    def __next__(self) -> bytes: ...
    @property
    def id(self) -> int:
        """The request's id (every response is checked against it)."""
        ...
    @property
    def finished(self) -> bool:
        """Whether the stream is over (the last response, or an end, was returned)."""
        ...
    @property
    def retried(self) -> bool:
        """Whether a server's death sent the request back to the queue (idempotent clients)."""
        ...
    def close(self) -> None:
        """Cancels the request (if not finished) and lets its slot go."""
        ...
    def __enter__(self) -> "PendingResponse": ...
    def __exit__(self, *exc: Any) -> None: ...

class Client:
    """A calling end: `call(data)` returns the response's bytes."""
    def call(self, data: Any, timeout: Optional[float] = None) -> bytes:
        """Sends `data` (any bytes-like object) and returns the response's bytes (the first,
        for a server that streams). `timeout` seconds is the request's deadline: it
        travels with it (a server sees it; no server takes it once passed) and the call
        raises `shm.Timeout` by then. `shm.PeerDied` when the server holding it died;
        `shm.ServerError` (`.code`) for an error answer; `shm.Closed` for a request the
        server dropped unanswered. The GIL is released; Ctrl-C raises
        `KeyboardInterrupt` within 50 ms.
        """
        ...
    async def call_async(self, data: Any, timeout: Optional[float] = None) -> bytes:
        """`call`, awaited (asyncio): the answer's bytes. No thread per call: the pending
        response is watched by the event loop's wait set (one per loop, through its
        `fileno()`); cancelling the await cancels the request.
        """
        ...
    def send_request(self, data: Any, timeout: Optional[float] = None) -> PendingResponse:
        """Sends `data` and returns its `PendingResponse`: iterate it for the stream of
        responses (the iteration ends after the server's last). `timeout` as for `call`.
        """
        ...
    def send_request_to_all(self, data: Any, timeout: Optional[float] = None) -> List[PendingResponse]:
        """Fan-out: sends a copy of `data` to every server process live now and returns
        their pending responses (a list; empty when no server is live). `timeout` as
        for `call`. Not the default: `send_request` goes to one server.
        """
        ...
    def close(self) -> None:
        """Closes the end (frees its line; pending responses stay usable)."""
        ...
    def __enter__(self) -> "Client": ...
    def __exit__(self, *exc: Any) -> None: ...

class Server:
    """An answering end: `receive()` returns the oldest queued request."""
    def receive(self, timeout: Optional[float] = None) -> Request:
        """The oldest queued request, waiting at most `timeout` seconds (None: as long as it
        takes; `shm.Timeout` after). The GIL is released; Ctrl-C raises
        `KeyboardInterrupt` within 50 ms.
        """
        ...
    async def receive_async(self, timeout: Optional[float] = None) -> Request:
        """`receive`, awaited (asyncio): the next request."""
        ...
    def try_receive(self) -> Optional[Request]:
        """The oldest queued request now, or None."""
        ...
    def close(self) -> None:
        """Closes the end (frees its line); from another thread too: a `receive` waiting
        on it raises `shm.Closed` within 50 ms.
        """
        ...
    def __enter__(self) -> "Server": ...
    def __exit__(self, *exc: Any) -> None: ...

class Service:
    """A service segment: clients send requests, each taken by exactly one server."""
    @staticmethod
    def create(
        mem: Memory,
        max_request: int = 4096,
        max_response: int = 4096,
        slots: int = 64,
        response_depth: int = 4,
        max_clients: int = 16,
        max_servers: int = 8,
    ) -> "Service":
        """Lays a service into fresh memory: requests of up to `max_request` bytes,
        responses of up to `max_response`, `slots` requests in flight at once,
        `response_depth` unread responses per request's stream, up to `max_clients`
        client and `max_servers` server processes.
        """
        ...
    @staticmethod
    def segment_len(
        max_request: int = 4096,
        max_response: int = 4096,
        slots: int = 64,
        response_depth: int = 4,
        max_clients: int = 16,
        max_servers: int = 8,
    ) -> int:
        """The memory a service with these options needs."""
        ...
    @staticmethod
    def attach(mem: Memory) -> "Service":
        """Attaches to a service segment, validating it."""
        ...
    def client(self, idempotent: bool = False, spin: Optional[float] = None) -> Client:
        """A calling end (takes a client line). `idempotent=True`: a request whose server
        dies before answering goes back to the queue once. `spin=` seconds a call spins
        before it sleeps (default 50 µs; 0: sleep at once; `inf`: busy-poll).
        """
        ...
    def server(self, spin: Optional[float] = None) -> Server:
        """An answering end (takes a server line; `spin=` as for a client)."""
        ...
    @property
    def max_request(self) -> int:
        """The largest request, in bytes."""
        ...
    @property
    def max_response(self) -> int:
        """The largest response, in bytes."""
        ...
    def close(self) -> None:
        """Closes this handle (ends handed out stay usable)."""
        ...
    def __enter__(self) -> "Service": ...
    def __exit__(self, *exc: Any) -> None: ...

class Serving:
    """A memfd served to every client from a background thread (`Memory.serve_background`)."""
    @property
    def served(self) -> int:
        """Clients served so far. A client may hold its fd a moment before it is counted;
        once closed, the count is final.
        """
        ...
    def close(self) -> None:
        """Stops serving (within 50 ms) and removes the socket file."""
        ...
    def __enter__(self) -> "Serving": ...
    def __exit__(self, *exc: Any) -> None: ...
