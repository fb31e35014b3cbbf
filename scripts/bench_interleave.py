"""Shared by the Python benchmark scripts: time the reference and ptekit interleaved
(A B A B ...) in one process and report medians, so that drifting machine load hits both
sides alike; read and reset this process's memory figures."""

import gc
import statistics
import time


def interleaved(reference, ptekit, repeat):
    """Runs ``reference()`` and ``ptekit()`` alternately ``repeat`` times each (after one
    untimed warm-up of each); returns ``(median_reference_s, median_ptekit_s)``."""
    for fn in (reference, ptekit):
        fn()
    times = ([], [])
    for _ in range(repeat):
        for i, fn in enumerate((reference, ptekit)):
            gc.collect()
            t0 = time.perf_counter()
            result = fn()
            times[i].append(time.perf_counter() - t0)
            del result
    return statistics.median(times[0]), statistics.median(times[1])


def write_file(result, path):
    """``result.write_to_file(f)`` into a fresh file at ``path`` (page cache, no fsync)."""
    with open(path, "wb") as f:
        result.write_to_file(f)


def proc_status(field):
    """``field`` of /proc/self/status (``VmRSS``, ``VmHWM``, ...) in bytes; 0 if absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
