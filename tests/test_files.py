"""Atomic writes (sbert_align.files) and the writers built on them (plotting, the MTEB result cache)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from sbert_align import files
from sbert_align.files import (
    TEMP_MARK,
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    replace_dir,
    staged_files,
)


def _leftovers(folder) -> list[str]:
    """Temporary names left anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if TEMP_MARK in p.name)


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Boom(Exception):
    pass


# ----------------------------------------------------------------------------------------------- single files
def test_write_helpers_create_parents_and_leave_no_temp_files(tmp_path):
    assert atomic_write_text(tmp_path / "a" / "t.md", "héllo\n") == tmp_path / "a" / "t.md"
    assert (tmp_path / "a" / "t.md").read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "m.json", {"acc": 0.5, "path": tmp_path})  # default=str for the path
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.5, "path": str(tmp_path)}
    atomic_write_text(tmp_path / "a" / "t.md", "second\n")  # replaces
    assert (tmp_path / "a" / "t.md").read_text() == "second\n"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_an_exception_mid_write_leaves_the_earlier_file_and_no_temp(tmp_path, error):
    target = tmp_path / "rows.csv"
    target.write_text("old complete content\n")
    with pytest.raises(error), atomic_open(target, newline="") as f:
        f.write("new, half")
        raise error()
    assert target.read_text() == "old complete content\n"
    assert _leftovers(tmp_path) == []
    # a missing file stays missing
    with pytest.raises(error), atomic_open(tmp_path / "new.txt") as f:
        f.write("x")
        raise error()
    assert not (tmp_path / "new.txt").exists() and _leftovers(tmp_path) == []


def test_unserialisable_json_leaves_the_earlier_file(tmp_path):
    target = atomic_write_json(tmp_path / "m.json", {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": {1, 2}}, default=None)
    assert json.loads(target.read_text()) == {"ok": 1} and _leftovers(tmp_path) == []


def test_atomic_path_keeps_the_suffix_and_needs_a_file(tmp_path):
    with atomic_path(tmp_path / "fig.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".fig.png.")
        assert not (tmp_path / "fig.png").exists()  # not there until the block ends
        tmp.write_bytes(b"png")
    assert (tmp_path / "fig.png").read_bytes() == b"png"
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(tmp_path / "x.png") as tmp:
        tmp.unlink()
    assert not (tmp_path / "x.png").exists() and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "y", "a"):
        pass


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permissions_follow_umask_or_the_replaced_file(tmp_path):
    fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    os.chmod(fresh, 0o640)
    atomic_write_text(fresh, "y")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640


# ----------------------------------------------------------------------------------------------- folders
def _old_model(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"old weights")
    (folder / "stale.txt").write_text("only in the old model")
    (folder / "sub" / "config.json").write_text('{"old": true}')


def test_atomic_dir_replaces_the_folder_whole(tmp_path):
    model = tmp_path / "run" / "model"
    _old_model(model)
    with atomic_dir(model) as tmp:
        assert tmp.parent == model.parent and tmp != model and list(tmp.iterdir()) == []
        (tmp / "weights.bin").write_bytes(b"new weights")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text('{"new": true}')
    assert _snapshot(model) == {"weights.bin": b"new weights", "sub/config.json": b'{"new": true}'}  # no stale.txt
    assert _leftovers(tmp_path) == []
    with atomic_dir(tmp_path / "fresh") as tmp:  # a folder that did not exist
        (tmp / "a").write_text("a")
    assert _snapshot(tmp_path / "fresh") == {"a": b"a"}


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_an_exception_while_building_a_folder_leaves_the_old_one(tmp_path, error):
    model = tmp_path / "model"
    _old_model(model)
    before = _snapshot(model)
    with pytest.raises(error), atomic_dir(model) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise error()
    assert _snapshot(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary sibling left


def test_atomic_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "model").write_text("a file")
    with pytest.raises(FileExistsError, match="not a folder"), atomic_dir(tmp_path / "model"):
        pytest.fail("the body must not run")
    assert (tmp_path / "model").read_text() == "a file" and _leftovers(tmp_path) == []


def _exchange_works_in(folder) -> bool:
    """Whether ``renameat2(RENAME_EXCHANGE)`` is available for folders under ``folder`` (Linux, a file system that
    supports it)."""
    a, b = folder / "probe_a", folder / "probe_b"
    a.mkdir()
    b.mkdir()
    try:
        return files._exchange(a, b)
    finally:
        os.rmdir(a)
        os.rmdir(b)


def _refusing_renameat2(code):
    """A stand-in for libc's ``renameat2`` that fails with ``code``, as an old kernel or a file system would."""
    import ctypes

    def renameat2(*args):
        ctypes.set_errno(code)
        return -1

    return lambda: renameat2


def _new_folder(tmp_path):
    new = tmp_path / ".model.new"
    new.mkdir()
    (new / "weights.bin").write_bytes(b"new")
    return new


def test_replace_dir_exchanges_the_folders_in_one_step(tmp_path, monkeypatch):
    if not _exchange_works_in(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    old, new = tmp_path / "model", _new_folder(tmp_path)
    _old_model(old)

    def no_rename(*args):
        raise AssertionError("the exchange path must not rename the target aside")

    monkeypatch.setattr(files.os, "rename", no_rename)
    assert replace_dir(new, old) == old
    monkeypatch.undo()
    assert _snapshot(old) == {"weights.bin": b"new"} and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("refusal", ["EINVAL", "ENOSYS", "EOPNOTSUPP", "unavailable"])
def test_replace_dir_falls_back_to_two_renames_where_the_exchange_is_refused(tmp_path, monkeypatch, refusal):
    import errno

    old, new = tmp_path / "model", _new_folder(tmp_path)
    _old_model(old)
    fake = (lambda: None) if refusal == "unavailable" else _refusing_renameat2(getattr(errno, refusal))
    monkeypatch.setattr(files, "_renameat2", fake)
    real_rename, calls = os.rename, []
    monkeypatch.setattr(files.os, "rename", lambda a, b: calls.append((a, b)) or real_rename(a, b))
    replace_dir(new, old)
    monkeypatch.undo()
    assert len(calls) == 3  # target aside, new folder in, old folder to the trash name
    assert _snapshot(old) == {"weights.bin": b"new"} and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replace_dir_raises_other_exchange_errors_and_changes_nothing(tmp_path, monkeypatch):
    import errno

    old, new = tmp_path / "model", _new_folder(tmp_path)
    _old_model(old)
    before = _snapshot(old)
    monkeypatch.setattr(files, "_renameat2", _refusing_renameat2(errno.EACCES))
    with pytest.raises(PermissionError):
        replace_dir(new, old)
    assert _snapshot(old) == before and (new / "weights.bin").read_bytes() == b"new"


def test_replace_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    old, new = tmp_path / "model", _new_folder(tmp_path)
    _old_model(old)
    before = _snapshot(old)
    real_rename = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the rename of the new folder onto the target
            raise OSError("disk on fire")
        return real_rename(src, dst)

    monkeypatch.setattr(files, "_renameat2", lambda: None)  # the two-rename scheme
    monkeypatch.setattr(files.os, "rename", flaky)
    with pytest.raises(OSError, match="disk on fire"):
        replace_dir(new, old)
    monkeypatch.undo()
    assert _snapshot(old) == before and (new / "weights.bin").read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_replaces_a_link_not_the_folder_it_points_to(tmp_path, monkeypatch, exchange):
    target = tmp_path / "elsewhere"
    _old_model(target)
    before = _snapshot(target)
    link, new = tmp_path / "model", _new_folder(tmp_path)
    link.symlink_to(target, target_is_directory=True)
    if not exchange:
        monkeypatch.setattr(files, "_renameat2", lambda: None)
    replace_dir(new, link)
    assert not link.is_symlink() and _snapshot(link) == {"weights.bin": b"new"}
    assert _snapshot(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "model"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even the restoring rename."""


def _killed_between_the_renames(tmp_path, monkeypatch):
    """The state a two-rename swap leaves when killed between its renames: no ``model``, the old one aside."""
    old, new = tmp_path / "model", _new_folder(tmp_path)
    _old_model(old)
    before = _snapshot(old)
    real_rename, calls = os.rename, []

    def killed(src, dst):
        calls.append(1)
        if len(calls) >= 2:
            raise Killed
        return real_rename(src, dst)

    with monkeypatch.context() as m:
        m.setattr(files, "_renameat2", lambda: None)
        m.setattr(files.os, "rename", killed)
        with pytest.raises(Killed):
            replace_dir(new, old)
    assert not old.exists()
    aside = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp.old")]
    assert len(aside) == 1 and aside[0].startswith(".model.")
    return old, new, before


def test_atomic_dir_restores_a_folder_left_aside_by_a_killed_swap(tmp_path, monkeypatch):
    model, new, before = _killed_between_the_renames(tmp_path, monkeypatch)
    with pytest.warns(RuntimeWarning, match="put back"), pytest.raises(Boom), atomic_dir(model):
        raise Boom  # even when the new build fails, the user's folder is back
    assert _snapshot(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.new", "model"]

    (tmp_path / "again").mkdir()
    model, new, before = _killed_between_the_renames(tmp_path / "again", monkeypatch)
    with pytest.warns(RuntimeWarning, match="put back"):
        replace_dir(new, model)  # restored first, then replaced whole by the new folder
    assert _snapshot(model) == {"weights.bin": b"new"} and _leftovers(tmp_path / "again") == []


def test_only_a_lone_aside_folder_of_that_name_is_restored(tmp_path):
    model = tmp_path / "model"
    for name in (".model.abc.tmp.trash", ".model.v2.abc12345.tmp.old", ".other.abc12345.tmp.old"):
        (tmp_path / name).mkdir()  # half deleted, another folder's, another folder's
    with atomic_dir(model) as tmp:
        (tmp / "a").write_text("a")
    assert _snapshot(model) == {"a": b"a"} and not any(p.name.startswith(".model.") for p in model.iterdir())
    assert (tmp_path / ".model.abc.tmp.trash").is_dir() and (tmp_path / ".model.v2.abc12345.tmp.old").is_dir()
    # two candidates: which one was the folder is unknown, so neither is touched
    for name in (".y.aaa.tmp.old", ".y.bbb.tmp.old"):
        (tmp_path / name).mkdir()
    with atomic_dir(tmp_path / "y") as tmp:
        (tmp / "b").write_text("b")
    assert _snapshot(tmp_path / "y") == {"b": b"b"}
    assert (tmp_path / ".y.aaa.tmp.old").is_dir() and (tmp_path / ".y.bbb.tmp.old").is_dir()


def test_staged_files_merge_file_by_file_and_only_on_success(tmp_path):
    cache = tmp_path / "cache"
    (cache / "m").mkdir(parents=True)
    (cache / "m" / "task_a.json").write_text("old a")
    (cache / "m" / "task_b.json").write_text("old b")
    with staged_files(cache) as tmp:
        (tmp / "m").mkdir()
        (tmp / "m" / "task_a.json").write_text("new a")
        (tmp / "m" / "task_c.json").write_text("new c")
        assert (cache / "m" / "task_a.json").read_text() == "old a"  # nothing moved yet
    assert _snapshot(cache) == {"m/task_a.json": b"new a", "m/task_b.json": b"old b", "m/task_c.json": b"new c"}
    before = _snapshot(cache)
    with pytest.raises(KeyboardInterrupt), staged_files(cache) as tmp:
        (tmp / "m").mkdir()
        (tmp / "m" / "task_a.json").write_text("interrupted")
        raise KeyboardInterrupt
    assert _snapshot(cache) == before and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


# ----------------------------------------------------------------------------------------------- writers using them
def test_plots_are_written_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from sbert_align.plotting import plot_training_curve

    path = plot_training_curve([(1, 2.0), (2, 1.5)], [(0, 0.5), (2, 0.7)], tmp_path / "curve.png")
    good = path.read_bytes()
    assert good.startswith(b"\x89PNG")

    def broken_savefig(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half a figure")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(KeyboardInterrupt):
        plot_training_curve([(1, 9.0)], [], path)
    assert path.read_bytes() == good and _leftovers(tmp_path) == []
