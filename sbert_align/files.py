"""Atomic file and folder writes: a reader sees the old version or the new one, never half of either.

Every writer here builds its output under a temporary name *in the same folder* as the target (so the final rename
never crosses a file system), flushes it to disk (``fsync``) and only then renames it into place with
:func:`os.replace`. When anything fails in between (an exception, Ctrl-C), the temporary file or folder is removed and
whatever was at the target before is left exactly as it was.

* :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`atomic_write_json`: one call for a whole file.
* :func:`atomic_open`: a file object for code that writes as it goes (``csv.writer``).
* :func:`atomic_path`: a temporary path for anything that insists on writing a path itself (matplotlib's
  ``savefig``, a library's ``save(path)``).
* :func:`atomic_dir`: a whole folder (a saved model): built under a temporary sibling name, then swapped in so that
  the old folder is replaced whole, never merged with the new one. On Linux the swap is one atomic exchange
  (``renameat2(RENAME_EXCHANGE)``); elsewhere two renames, and a folder left aside by a swap that was killed between
  them is put back by the next :func:`atomic_dir` / :func:`replace_dir` of the same path.
* :func:`staged_files`: a folder of *several independent* files (a result cache): written under a temporary
  sibling, then moved in file by file, each replacing its namesake atomically while other files stay.

Example::

    from sbert_align.files import atomic_dir, atomic_path, atomic_write_json

    atomic_write_json("runs/a/metrics.json", {"accuracy": 0.9})
    with atomic_path("runs/a/curve.png") as tmp:
        fig.savefig(tmp)                       # runs/a/curve.png appears only once the figure is complete
    with atomic_dir("runs/a/model") as tmp:
        model.save(str(tmp))                   # the old runs/a/model is replaced whole, no stale files
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_open",
    "atomic_path",
    "atomic_dir",
    "replace_dir",
    "staged_files",
    "TEMP_MARK",
]

#: every temporary name made here contains this mark (``.<name>.<random>.tmp<suffix>``), so leftovers are easy to find
TEMP_MARK = ".tmp"


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path, default: int) -> int:
    """The permissions a replacement of ``path`` gets: those of the file it replaces, else ``default`` less umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return default & ~_umask()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (the rename itself) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            p = Path(folder) / name
            if p.is_file() and not p.is_symlink():
                _fsync_file(p)
        _fsync_dir(Path(folder))


def _prepare(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"path: expected a file or folder name, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``; on a clean exit its file is flushed and renamed onto ``path``.

    The temporary name keeps the target's suffix (``.png`` stays ``.png``), so writers that infer the format from
    the name work unchanged. On an exception (``KeyboardInterrupt`` included) the temporary file is removed and
    ``path`` is untouched. The parent folder is created when missing.

    Args:
        path: the file to write.

    Yields:
        The temporary path (an empty file already exists there; overwrite it).

    Raises:
        FileNotFoundError: the body left no file at the temporary path.

    Example::

        import matplotlib.pyplot as plt
        from sbert_align.files import atomic_path

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        with atomic_path("figure.png") as tmp:
            fig.savefig(tmp)
    """
    path = _prepare(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARK + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary file {tmp.name}.")
        os.chmod(tmp, _mode_for(path, 0o666))
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, made atomic: ``path`` appears (or is replaced) only on a clean exit.

    Args:
        path: the file to write.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: text encoding (ignored for ``"wb"``).
        newline: as for :func:`open` (``""`` for ``csv.writer``).

    Example::

        import csv
        from sbert_align.files import atomic_open

        with atomic_open("rows.csv", newline="") as f:
            csv.writer(f).writerows([["a", 1], ["b", 2]])
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}.")
    with atomic_path(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as f:
                yield f
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as f:
                yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``.

    Example::

        from sbert_align.files import atomic_write_bytes

        atomic_write_bytes("blob.bin", b"\\x00\\x01")
    """
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``.

    Example::

        from sbert_align.files import atomic_write_text

        atomic_write_text("table.md", "| a | b |\\n")
    """
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, default: Any = str) -> Path:
    """Write ``obj`` as JSON (``default=str`` for values JSON lacks) to ``path`` atomically; returns ``path``.

    The object is serialised *before* anything is written, so an unserialisable value leaves no trace.

    Example::

        from sbert_align.files import atomic_write_json

        atomic_write_json("metrics.json", {"accuracy": 0.91, "steps": 170})
    """
    text = json.dumps(obj, indent=indent, default=default) + "\n"
    return atomic_write_text(path, text)


#: ``renameat2`` flag: swap the two names atomically (both must exist); from ``<linux/fs.h>``
_RENAME_EXCHANGE = 2
#: ``*at`` calls: a relative path is relative to the current folder
_AT_FDCWD = -100
#: errors of ``renameat2(RENAME_EXCHANGE)`` meaning "not here" (old kernel, a file system or sandbox that refuses):
#: nothing was changed, so the two-rename scheme is used instead (and raises the real error if there is one)
_EXCHANGE_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM, errno.EXDEV}
)
#: suffix of the old folder while the two-rename scheme has it aside (restored when found alone, target missing)
_ASIDE = TEMP_MARK + ".old"
#: suffix of an old folder that is being deleted after a successful swap (never restored: it may be half deleted)
_TRASH = TEMP_MARK + ".trash"


@functools.cache
def _renameat2() -> Any:
    """glibc's (>= 2.28) or musl's ``renameat2``, or ``None`` off Linux / with an older C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step; ``False`` (nothing changed) where that is unavailable."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _sibling_name(path: Path, suffix: str) -> Path:
    """A fresh, unused name ``.<name>.<random><suffix>`` next to ``path`` (nothing is created there)."""
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix))
    os.rmdir(tmp)
    return tmp


def _remove(path: Path) -> None:
    """Delete a replaced folder, or the link that stood for it (``rmtree`` refuses links), ignoring errors."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _restore_aside(path: Path) -> None:
    """Put back the folder a killed two-rename swap left aside, when ``path`` is missing and exactly one is there."""
    if path.exists() or path.is_symlink() or not path.parent.is_dir():
        return
    pattern = re.compile(re.escape(f".{path.name}.") + r"[^.]+" + re.escape(_ASIDE))
    aside = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    if len(aside) != 1:  # none, or several: which one was the folder is not known, leave them to the user
        return
    os.rename(aside[0], path)
    _fsync_dir(path.parent)
    warnings.warn(
        f"{str(path)!r} was missing and {aside[0].name!r} (left aside by an interrupted replacement) was put back.",
        RuntimeWarning,
        stacklevel=3,
    )


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the folder ``src`` to ``dst``, replacing a folder already at ``dst`` whole (never merging the two).

    ``src`` must be on the same file system as ``dst`` (a sibling). On Linux (glibc >= 2.28) the two folders are
    exchanged in one atomic step (``renameat2(RENAME_EXCHANGE)``), so ``dst`` is never absent: a reader or a kill sees
    the old folder or the new one; the old one, now at ``src``, is then deleted. Where the exchange is unavailable
    (another OS, an older C library or kernel, a file system that refuses), the old ``dst`` is renamed aside to
    ``.<name>.<random>.tmp.old``, then ``src`` is renamed onto ``dst``; if the second rename fails the old folder is
    put back. A process killed between those two renames leaves ``dst`` missing and the old folder aside: the next
    :func:`replace_dir` or :func:`atomic_dir` of ``dst`` puts it back first (with a ``RuntimeWarning``), when it is
    the only such leftover.

    Args:
        src: the new folder.
        dst: where it goes.

    Returns:
        ``dst``.

    Raises:
        FileExistsError: ``dst`` exists and is not a folder.

    Example::

        from sbert_align.files import replace_dir

        replace_dir("runs/.model.new", "runs/model")
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise NotADirectoryError(f"src: {str(src)!r} is not a folder.")
    _restore_aside(dst)
    if dst.exists() and not dst.is_dir():
        raise FileExistsError(f"{str(dst)!r} exists and is not a folder; remove it first.")
    if not dst.exists() and not dst.is_symlink():
        os.rename(src, dst)
        _fsync_dir(dst.parent)
        return dst
    if _exchange(src, dst):
        _fsync_dir(dst.parent)
        _remove(src)  # the old folder, now under the temporary name
        return dst
    old = _sibling_name(dst, _ASIDE)
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    _fsync_dir(dst.parent)
    trash = _sibling_name(dst, _TRASH)
    try:
        os.rename(old, trash)  # a half-deleted folder must never look like one to restore
    except OSError:
        trash = old
    _remove(trash)
    return dst


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """An empty temporary sibling folder of ``path``; on a clean exit it replaces ``path`` whole.

    Everything written under the yielded folder is flushed to disk, then the folder is swapped in with
    :func:`replace_dir` (atomically on Linux): files of an earlier ``path`` that the new one lacks are gone, none are
    merged. On an exception the temporary folder is deleted and ``path`` is untouched. When ``path`` is missing but
    an earlier swap was killed half-way (its old folder lies aside as ``.<name>.<random>.tmp.old``, alone), that
    folder is put back first.

    Args:
        path: the folder to (re)create.

    Yields:
        The temporary folder to fill.

    Raises:
        FileExistsError: ``path`` exists and is not a folder (checked before anything is built).

    Example::

        from sentence_transformers import SentenceTransformer
        from sbert_align.files import atomic_dir

        model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
        with atomic_dir("runs/a/model") as tmp:
            model.save(str(tmp))
    """
    path = _prepare(path)
    _restore_aside(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{str(path)!r} exists and is not a folder; remove it first.")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARK))
    try:
        yield tmp
        os.chmod(tmp, _mode_for(path, 0o777))
        _fsync_tree(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def staged_files(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder of ``path`` whose files move into ``path`` one by one on a clean exit.

    For a folder of independent files that grows over runs (a result cache): each new file replaces its namesake
    under ``path`` atomically (same relative path; subfolders are created), files already in ``path`` that were not
    rewritten stay. On an exception nothing moves and the temporary folder is deleted.

    Args:
        path: the destination folder (created when missing).

    Yields:
        The temporary folder to write into.

    Example::

        from sbert_align.files import staged_files

        with staged_files("results") as tmp:
            (tmp / "task_a.json").write_text("{}")  # results/task_a.json appears only after the block
    """
    path = _prepare(path)
    path.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARK))
    try:
        yield tmp
        _fsync_tree(tmp)
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dst = path / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(src, _mode_for(dst, 0o666))
            os.replace(src, dst)
            _fsync_dir(dst.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
