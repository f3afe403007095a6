"""Every test leaves /dev/shm as it found it: a name the test process made (with
`unique()`: /shm-py-PID-N) that is still there after the test (and a garbage
collection) fails it."""

import gc
import os

import pytest


def _ours():
    prefix = f"shm-py-{os.getpid()}-"
    return {e for e in os.listdir("/dev/shm") if e.startswith(prefix)}


@pytest.fixture(autouse=True)
def no_leaked_segments():
    before = _ours()
    yield
    # Objects a test's traceback kept alive (pytest.raises holds its frames) go at the
    # next collection, and their segments with them.
    gc.collect()
    left = _ours() - before
    for e in left:
        os.unlink(os.path.join("/dev/shm", e))
    assert not left, f"the test left {sorted(left)} in /dev/shm"
