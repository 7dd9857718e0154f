"""The scoring workers' allocator settings: a request's large arrays reuse freed memory instead
of faulting in fresh pages every time (measured in a fresh process, as a Gunicorn worker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from persona.serving.memory import tune_allocator

# A request thread (gthread: not the main arena) allocating what a 10k-row Arrow request does:
# the body, the numeric matrix, the distances, the answer; page faults of the repeated requests.
REQUESTS = textwrap.dedent("""
    import resource, sys, threading
    import numpy as np
    from persona.serving.memory import tune_allocator

    if sys.argv[1] == "tuned":
        assert tune_allocator()
    faults = []

    def requests():
        for _ in range(40):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            blocks = [np.ones(n) for n in (125_000, 100_000, 60_000, 60_000, 30_000, 250_000)]
            del blocks
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

    thread = threading.Thread(target=requests)
    thread.start()
    thread.join()
    print(sum(faults[5:]))
    """)


def faults_per_request(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", REQUESTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip()) / 35


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_workers_reuse_freed_memory_instead_of_faulting_pages_in():
    assert tune_allocator()
    default, tuned = faults_per_request("default"), faults_per_request("tuned")
    # 5 MB of fresh pages is ~1,250 faults per request
    assert default > 500, default
    assert tuned < 20, tuned
