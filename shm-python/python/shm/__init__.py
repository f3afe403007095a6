"""Shared memory between processes: channels, broadcasts and typed records.

The Rust library ``shm`` from Python. Memory comes from one of three backends::

    mem = shm.posix_create("/cam", size)        # named, in /dev/shm
    mem = shm.memfd_create(size); mem.serve(path)   # sealed memfd, its fd over a socket
    mem = shm.memfd_connect(path)
    mem = shm.anon_create(size)                 # shared with children of os.fork()

and is then laid out as a channel, a broadcast, an event or a record::

    ch = shm.Channel.create(mem)                 # the layout takes the memory over
    tx = ch.sender(); tx.send(b"hello")
    rx = shm.Channel.attach(shm.posix_open("/cam")).receiver()
    rx.recv(timeout=1.0)                         # -> b"hello"

Request/response: ``svc = shm.Service.create(mem)``; a server process takes requests
(``req = svc.server().receive()``, then ``req.respond_last(answer)``), a client calls
(``shm.Service.attach(mem).client().call(b"ping", timeout=1.0)`` -> the answer's bytes);
each request goes to exactly one server, and its deadline travels with it.

Waiting on many at once: ``ws = shm.WaitSet(); ws.attach(rx); ws.attach(listener)``,
then ``ws.wait(timeout=)`` returns the ready objects; ``ws.fileno()`` is readable while
one is (for ``selectors`` and asyncio's ``loop.add_reader``). Events carry no payload:
``ev = shm.Event.create(mem); ev.notifier().notify(3); ev.listener().wait()`` -> ``{3}``.

Receiving copies once, into a new ``bytes`` or into your buffer (``recv_into``: a
bytearray, a numpy array): Python never holds a view of memory another process can
write. Every wait releases the GIL and Ctrl-C interrupts it. Errors are ``shm.Error``
and its subclasses (``Timeout``, ``Closed``, ``PeerDied``, ``Lagged``, ``Evicted``,
``SchemaMismatch``, ``ReadOnly``, ``Truncated``, ``Corrupt``, ``Full``, ``Empty``,
``Cancelled``, ``ServerError``, and
for the backends ``NotFound``, ``AlreadyExists``, ``PermissionDenied``, ``NoSpace``);
a bad argument is ``ValueError``.
"""

import atexit as _atexit
import struct as _struct

from ._shm import (  # noqa: F401
    AlreadyExists,
    Broadcast,
    Cancelled,
    Channel,
    Client,
    Closed,
    Corrupt,
    Empty,
    Error,
    Event,
    Evicted,
    Full,
    Lagged,
    Listener,
    Notifier,
    UpstreamLost,
    Memory,
    NoSpace,
    NotFound,
    PeerDied,
    PendingResponse,
    PermissionDenied,
    Publisher,
    RawRecord,
    RawSeqLock,
    ReadOnly,
    Receiver,
    Request,
    Reservation,
    SchemaMismatch,
    Sender,
    Server,
    ServerError,
    Service,
    Serving,
    Subscriber,
    Timeout,
    Truncated,
    WaitSet,
)

# At interpreter exit: threads blocked in a wait park for good instead of taking the GIL
# back during finalisation (which aborts the process), and the names of the segments
# this process created and still holds (a daemon thread's, which Python never frees) are
# removed.
from ._shm import _at_exit  # noqa: E402

_atexit.register(_at_exit)

posix_create = Memory.posix_create
posix_open = Memory.posix_open
memfd_create = Memory.memfd_create
memfd_connect = Memory.memfd_connect
anon_create = Memory.anon_create

__all__ = [
    "AlreadyExists", "NoSpace", "NotFound", "PermissionDenied",
    "Broadcast", "Cancelled", "Channel", "Client", "Closed", "Corrupt", "Empty", "Error", "Event", "Evicted", "Full",
    "Lagged", "Listener", "Memory", "Notifier", "PeerDied", "PendingResponse", "Publisher", "ReadOnly", "Receiver", "Request", "Reservation", "SchemaMismatch",
    "Segment", "SeqLock", "Sender", "Server", "ServerError", "Service", "Serving", "Subscriber", "Timeout", "Truncated", "UpstreamLost", "WaitSet", "anon_create",
    "memfd_connect", "memfd_create", "posix_create", "posix_open",
]


class _StructCodec:
    """A record described by a ``struct`` format in native layout (C's, Rust's
    ``#[repr(C)]``)."""

    def __init__(self, fmt):
        if not isinstance(fmt, str):
            raise TypeError(f"format must be a struct format string, not {type(fmt).__name__}")
        if fmt[:1] not in "@":
            if fmt[:1] in "=<>!":
                raise ValueError("use a native format (no byte-order prefix): records have C layout")
            fmt = "@" + fmt
        self.fmt = fmt
        self.size = _struct.calcsize(fmt)
        codes = [c for c in fmt[1:] if c.isalpha()]
        self.align = max((_struct.calcsize("@" + c) for c in codes if c not in "sxp"), default=1)

    def encode(self, value):
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return _struct.pack(self.fmt, *value)

    def decode(self, data):
        v = _struct.unpack(self.fmt, data)
        return v


class _DtypeCodec:
    """A record described by a numpy dtype (a structured dtype for a C struct)."""

    def __init__(self, dtype):
        import numpy as np

        self.np = np
        self.dtype = np.dtype(dtype)
        self.size = self.dtype.itemsize
        self.align = self.dtype.alignment
        if self.dtype.names:
            # The C layout of the same fields: a dtype made without align=True is packed,
            # which is the C layout only if no field needed padding.
            names = self.dtype.names
            c = np.dtype(
                {"names": names, "formats": [self.dtype.fields[n][0] for n in names]},
                align=True,
            )
            same = c.itemsize == self.dtype.itemsize and all(
                c.fields[n][1] == self.dtype.fields[n][1] for n in names
            )
            if not same:
                raise ValueError(
                    "this structured dtype is not in C layout (fields need padding): "
                    "make it with align=True"
                )
            self.align = c.alignment

    def encode(self, value):
        return self.np.asarray(value, dtype=self.dtype).tobytes()

    def decode(self, data):
        return self.np.frombuffer(data, dtype=self.dtype)[0]


def _codec(format, dtype):
    if (format is None) == (dtype is None):
        raise TypeError("give exactly one of format= (a struct format) or dtype= (a numpy dtype)")
    return _StructCodec(format) if format is not None else _DtypeCodec(dtype)


class Segment:
    """A typed record in shared memory, its type checked against the header exactly as
    Rust's ``Record`` is: the name, version, size and alignment must match what the
    writer declared (``SchemaMismatch`` otherwise, with the same text as in Rust).

    The record is given by a ``struct`` format (``format="QQQ"``) or a numpy dtype
    (``dtype=np.dtype([("col1", "<u8"), ...])``), in C layout. ``read()`` returns a tuple
    (struct) or a numpy record (dtype); ``write(value)`` takes the same.
    """

    # The extension class behind it: RawRecord here, RawSeqLock for SeqLock.
    _raw_class = RawRecord

    def __init__(self, raw, codec):
        self._raw = raw
        self._codec = codec

    @classmethod
    def create(cls, mem, value, *, name, version=1, format=None, dtype=None):
        """Lays a record segment into ``mem`` holding ``value``."""
        c = _codec(format, dtype)
        return cls(cls._raw_class.create(mem, name, version, c.size, c.align, c.encode(value)), c)

    @classmethod
    def attach(cls, mem, *, name, version=1, format=None, dtype=None):
        """Attaches to a record segment, checking its schema."""
        c = _codec(format, dtype)
        return cls(cls._raw_class.attach(mem, name, version, c.size, c.align), c)

    @classmethod
    def attach_foreign(cls, mem, *, format=None, dtype=None):
        """A segment with no header (the tutorial's, Python's
        ``multiprocessing.shared_memory``): the record at offset 0, only its size checked."""
        c = _codec(format, dtype)
        return cls(RawRecord.attach_foreign(mem, c.size), c)

    def read(self):
        """A copy of the record."""
        return self._codec.decode(self._raw.read())

    def write(self, value):
        """Overwrites the record."""
        self._raw.write(self._codec.encode(value))

    def close(self):
        """Closes the segment (a posix segment this process created is removed)."""
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SeqLock(Segment):
    """A typed record behind a seqlock: ``load()`` returns a consistent snapshot (never a
    mix of two stores, whatever the writers do), ``store(value)`` replaces it. A writer
    killed in the middle of a store is reported (``shm.Error``: the writer died), and the
    next store repairs it. Described by a ``struct`` format or a numpy dtype, checked
    against the header like ``Segment``."""

    _raw_class = RawSeqLock

    @classmethod
    def attach_foreign(cls, mem, *, format=None, dtype=None):
        raise Error("a seqlock needs our header: there is no headerless seqlock")

    def load(self):
        """A consistent snapshot of the record."""
        return self._codec.decode(self._raw.load())

    read = load

    def store(self, value):
        """Replaces the record; readers see the old or the new value, never a mix."""
        self._raw.store(self._codec.encode(value))

    write = store

