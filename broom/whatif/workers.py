"""Reading the files of ``broom whatif`` on several cores.

Each file is read (inflated, checked, its launch and tag records decoded and
selected) by one of ``jobs`` worker processes; the main process takes the results in
the files' own order, so the stream that puts records in time order and the verdicts
see exactly what one process reading the files in turn would (``--jobs 1``). At most
``2 * jobs`` files are in flight, so memory does not grow with the number of files.
"""
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
