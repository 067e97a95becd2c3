"""Reading the files of ``broom whatif`` on several cores.

Each file is read (inflated, checked, its launch and tag records decoded and
selected) by one of ``jobs`` worker processes; the main process takes the results in
the files' own order, so the stream that puts records in time order and the verdicts
see exactly what one process reading the files in turn would (``--jobs 1``). At most
``2 * jobs`` files are in flight, so memory does not grow with the number of files.
"""
import ctypes
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from broom.whatif import sources

__all__ = ["BrokenProcessPool", "default_jobs", "read_all"]


def default_jobs():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_worker = {}


def _start(pick, limit):
    _worker.update(pick=pick, limit=limit)
    _keep_freed_blocks()


#: glibc's mallopt parameters: blocks up to this size come from the heap, and freed
#: memory is given back to the system only beyond the trim threshold.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCKS, TRIM_ABOVE = 32 * 2**20, 64 * 2**20


def _keep_freed_blocks():
    """A file's text is handled in blocks of a few MB: glibc hands each such block
    back to the system when it is freed and faults it in again, page by page, for
    the next one; in a worker that cost a fifth of its time (benchmarks/whatif.py).
    Kept in the process instead, within TRIM_ABOVE (the process reading files, the
    main one with ``--jobs 1``). Nothing to do without glibc."""
    if os.name != "posix":
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS)
        mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE)


def _read(task):
    return sources.read(task, _worker["pick"], _worker["limit"])


def read_all(tasks, pick, limit=sources.DEFAULT_LIMIT, jobs=1):
    """Each task of ``sources.read_sources`` as a sources.Read (the ``pick(record)``
    values of its records) or the Skipped it is, in the tasks' order. Worker
    processes start only when there are two files or more."""
    tasks = iter(tasks)
    head = []
    if jobs > 1:
        for task in tasks:
            head.append(task)
            if len(head) == 2:
                break
    if jobs <= 1 or len(head) < 2:
        _keep_freed_blocks()
        for task in _chain(head, tasks):
            yield task if isinstance(task, sources.Skipped) else sources.read(task, pick,
                                                                              limit)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start,
                             initargs=(pick, limit)) as pool:
        window = deque()
        for task in _chain(head, tasks):
            window.append(task if isinstance(task, sources.Skipped)
                          else pool.submit(_read, task))
            while len(window) >= 2 * jobs:
                yield _result(window.popleft())
        while window:
            yield _result(window.popleft())


def _chain(head, rest):
    yield from head
    yield from rest


def _result(item):
    return item if isinstance(item, sources.Skipped) else item.result()
