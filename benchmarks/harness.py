"""The row harness every benchmark grid shares: run one row in its own process, merge it into a results file.

A grid (``bench_quality.py``, ``bench_pairs.py``, ``bench_confound.py``, ``bench_nearby.py``, ``bench_oos.py``,
``bench_forgetting.py``) is a list of rows, each a JSON object with the settings that identify it (its *key*) and its
metrics. Every finished row is merged at once into ``<name>.json`` (atomically, under an exclusive lock, so two grids
may write one file) and the Markdown table beside it is rewritten, so an interrupted grid keeps its finished rows and
a rerun skips them. A row trains in a fresh process (:func:`spawn_row`) so that its peak memory and wall time are its
own and a crash or an out-of-memory kill costs one row, not the grid.

Nothing here is specific to one benchmark: the key, the settings and the table come from the caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Results = dict[str, Any]


def log(message: str, name: str | None = None) -> None:
    """One progress line: ``[HH:MM:SS] name: message``."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}]{f' {name}:' if name else ''} {message}", flush=True)


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def own_peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` of ``/proc/self/status``.

    Not ``ru_maxrss``: Linux carries that over ``fork`` + ``exec`` (it is the larger of the parent's resident memory at
    the fork and the process's own peak), so a small row would report the orchestrator's ~220 MiB. ``VmHWM`` belongs
    to the process's own address space, which ``exec`` starts afresh. Falls back to ``ru_maxrss`` where ``/proc`` is
    missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def finish_row(row: Row, start: float) -> Row:
    """Stamp a finished row (failed or not): its total wall time, its own peak RSS and when it finished."""
    row["total_seconds"] = round(time.perf_counter() - start, 2)
    row["peak_rss_mib"], row["peak_rss_source"] = own_peak_rss_mib(), "VmHWM"
    row["finished_at"] = now_utc()
    return row


def child_env(threads: int) -> dict[str, str]:
    """The environment of a row's process: ``threads`` OpenMP / MKL / OpenBLAS threads, offline Hugging Face."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.setdefault(var, "1")
    return env


def row_flags(options: Mapping[str, Any]) -> list[str]:
    """Command-line flags of ``options`` (``max_train`` -> ``--max-train``): a float by ``repr`` (so it parses back to
    the same value), ``True`` as a bare switch; ``None`` and ``False`` are left out; a list or tuple gives its items
    after the flag."""
    flags: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags += [flag, *(repr(v) if isinstance(v, float) else str(v) for v in value)]
        else:
            flags += [flag, repr(value) if isinstance(value, float) else str(value)]
    return flags


def spawn_row(script: str | Path, options: Mapping[str, Any], threads: int, failed: Row) -> Row:
    """Run one row of ``script`` in a fresh process and read back the row it wrote.

    The process runs ``python script --row --row-out FILE <options as flags>`` with :func:`child_env`. When it ends
    without writing its row (a crash, a signal, an out-of-memory kill), the returned row is ``failed`` (the row's
    settings) with ``status: failed``, the reason, and the wall time.
    """
    with tempfile.TemporaryDirectory(prefix="sbert-align-row-") as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, str(Path(script).resolve()), "--row", "--row-out", str(out), *row_flags(options)]
        start = time.perf_counter()
        code = subprocess.run(command, env=child_env(threads), check=False).returncode
        if out.is_file():
            return json.loads(out.read_text())
    reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    if code in (-9, 137):
        reason += " (possibly out of memory)"
    return {
        **failed,
        "threads": threads,
        "status": "failed",
        "error": f"the row's process ended without a result: {reason}",
        "total_seconds": round(time.perf_counter() - start, 2),
        "finished_at": now_utc(),
    }


def read_results(path: Path) -> Results:
    """The results file at ``path`` (``{"meta": ..., "rows": [...]}``), or an empty one when there is none yet."""
    if not path.is_file():
        return {"meta": {}, "rows": []}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a results file of this benchmark (expected an object with 'rows').")
    return data


@contextlib.contextmanager
def results_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a results file for its read-merge-write (two grids may share a file)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"sbert-align-quality-{digest}.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_row(results: Results, key: Any, key_of: Callable[[Row], Any]) -> Row | None:
    """The finished (``status: ok``) row whose ``key_of(row)`` is ``key``; failed rows are retried."""
    return next((r for r in results["rows"] if key_of(r) == key and r.get("status") == "ok"), None)


def read_cached(path: Path, key: Any, key_of: Callable[[Row], Any]) -> Row | None:
    """:func:`cached_row` of the results file at ``path``, read under its lock."""
    with results_lock(path):
        return cached_row(read_results(path), key, key_of)


def merge_row(
    json_path: Path,
    md_path: Path,
    row: Row,
    meta: dict[str, Any],
    key_of: Callable[[Row], Any],
    render: Callable[[Results], str],
) -> Results:
    """Put ``row`` into the results file (replacing the row with its key) and rewrite the table from all rows; both
    writes atomic, the whole read-merge-write under :func:`results_lock`."""
    from sbert_align.files import atomic_write_json, atomic_write_text

    with results_lock(json_path):
        results = read_results(json_path)
        key = key_of(row)
        results["rows"] = [r for r in results["rows"] if key_of(r) != key] + [row]
        results["meta"] = meta
        atomic_write_json(json_path, results)
        atomic_write_text(md_path, render(results))
    return results


def failed_rows_lines(rows: list[Row], describe: Callable[[Row], str], heading: str = "## Failed rows") -> list[str]:
    """A report's section on the rows that failed (``status`` other than ``"ok"``): the heading, then one line per
    failed row, ``- <describe(row)>: <its error>``, and a blank line; no lines at all where no row failed.

    Example::

        >>> failed_rows_lines([{"method": "ce", "status": "failed", "error": "boom"}], lambda r: r["method"])
        ['## Failed rows', '', '- ce: boom', '']
    """
    failed = [r for r in rows if r.get("status") != "ok"]
    if not failed:
        return []
    return [heading, "", *(f"- {describe(r)}: {r.get('error', 'unknown error')}" for r in failed), ""]


def method_lines(rows: list[Row], registry: Mapping[str, Any], order: Callable[[str], Any]) -> list[str]:
    """A report's "Methods" section: one line per method that has a row, sorted by ``order``, ``- `name`: summary``,
    with the summary of ``registry[name]`` (an object with a ``summary``), or, for a method no longer registered,
    the summary its rows stored."""
    lines = ["## Methods", ""]
    for name in sorted({r["method"] for r in rows}, key=order):
        method = registry.get(name)
        summary = method.summary if method else next((r.get("summary") for r in rows if r["method"] == name), "")
        lines.append(f"- `{name}`: {summary}")
    return lines
