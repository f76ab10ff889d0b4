"""Named data sets: the bundled TREC files and the project's shared offline data folder.

* ``trec6`` / ``trec50``: the TREC question set (Li & Roth 2002) bundled in ``sbert_align/_bundled``, always offline,
  with the ``label_coarse`` / ``label_fine`` label column;
* ``banking77``, ``clinc150``, ``sst2``, ``mrpc``, ``stsb``, ``quora``: the shared offline copies, found under
  ``$SBERT_ALIGN_DATA_DIR``, else ``./shared/data``, ``../shared/data`` or ``<repo>/../shared/data``
  (:func:`shared_data_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .reading import SUFFIXES

__all__ = [
    "NAMED_SETS",
    "DEFAULT_DEMO_DATA",
    "NamedSet",
    "bundled_path",
    "shared_data_dir",
    "find_split_file",
    "named_set_key",
    "resolve_named_set",
]

DEFAULT_DEMO_DATA = "trec6"
_BUNDLED = Path(__file__).resolve().parents[1] / "_bundled"

#: name -> where its files are: ``bundled`` (TREC) or ``folder`` under the shared data folder with the ``train`` and
#: ``test`` file stems; ``label`` is the default label column.
NAMED_SETS: dict[str, dict[str, Any]] = {
    "trec6": {"bundled": True, "label": "label_coarse"},
    "trec50": {"bundled": True, "label": "label_fine"},
    "banking77": {"folder": "banking77", "train": "train", "test": "test", "label": "label"},
    "clinc150": {"folder": "clinc150", "train": "train", "test": "test", "label": "label"},
    "sst2": {"folder": "sst2", "train": "train", "test": "test", "label": "label"},
    "mrpc": {"folder": "mrpc", "train": "train", "test": "test", "label": "label"},
    "stsb": {"folder": "stsb", "train": "train", "test": "test", "label": "score"},
    # The shared Quora partition has no train split: dev is used for training, test for testing.
    "quora": {"folder": "quora_duplicates", "train": "dev", "test": "test", "label": "label"},
}
_ALIASES = {"trec": "trec6", "quora_duplicates": "quora", "banking": "banking77", "clinc": "clinc150"}


@dataclass(frozen=True)
class NamedSet:
    """Where a named set's files are.

    Args:
        key: The set's name (``"trec6"``, ``"banking77"``, ...).
        train: The train file.
        test: The test file.
        label: The default label column.
        text_columns: The text columns when they are fixed (bundled TREC), else None (detected).
        source: A description of where the data came from.
    """

    key: str
    train: Path
    test: Path
    label: str
    text_columns: tuple[str, ...] | None
    source: str


def named_set_key(spec: str) -> str | None:
    """The :data:`NAMED_SETS` key that ``spec`` names (aliases such as ``trec`` and ``quora_duplicates`` included).

    Example:
        ::

            from sbert_align.data import named_set_key

            assert named_set_key("TREC") == "trec6" and named_set_key("my.csv") is None
    """
    key = _ALIASES.get(spec.lower(), spec.lower())
    return key if key in NAMED_SETS else None


def bundled_path(name: str) -> Path:
    """Path of a file bundled with the package (``trec_train.csv``, ``trec_test.csv``).

    Example:
        ::

            from sbert_align.data import bundled_path

            assert bundled_path("trec_train.csv").is_file()
    """
    return _BUNDLED / name


def shared_data_dir() -> Path | None:
    """The shared offline data folder, or ``None`` when none exists.

    Looked up in this order: ``$SBERT_ALIGN_DATA_DIR``, ``./shared/data``, ``../shared/data``,
    ``<repo>/../shared/data``.

    Example:
        ::

            from sbert_align.data import shared_data_dir

            folder = shared_data_dir()
            print(folder if folder is not None else "no shared data folder")
    """
    candidates = []
    if os.environ.get("SBERT_ALIGN_DATA_DIR"):
        candidates.append(Path(os.environ["SBERT_ALIGN_DATA_DIR"]))
    cwd = Path.cwd()
    repo = Path(__file__).resolve().parents[2]
    candidates += [cwd / "shared" / "data", cwd.parent / "shared" / "data", repo.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def find_split_file(folder: Path, stems: Sequence[str]) -> Path | None:
    """The first ``folder/<stem><suffix>`` that exists, for the stems in order and the suffixes of :func:`read_rows`.

    Example:
        ::

            from sbert_align.data import bundled_path, find_split_file

            assert find_split_file(bundled_path(""), ["trec_train"]).name == "trec_train.csv"
    """
    for stem in stems:
        for suffix in SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def resolve_named_set(key: str) -> NamedSet:
    """The files of the named set ``key`` (a :data:`NAMED_SETS` key).

    Raises:
        ValueError: an unknown name, no shared data folder, or a folder without the expected files.

    Example:
        ::

            from sbert_align.data import resolve_named_set

            print(resolve_named_set("trec6").train)
    """
    if key not in NAMED_SETS:
        raise ValueError(f"data: {key!r} is not a named set ({', '.join(sorted(NAMED_SETS))}).")
    info = NAMED_SETS[key]
    if info.get("bundled"):
        return NamedSet(
            key,
            bundled_path("trec_train.csv"),
            bundled_path("trec_test.csv"),
            info["label"],
            ("text",),
            "bundled TREC (Li & Roth 2002)",
        )
    root = shared_data_dir()
    folder = None if root is None else root / info["folder"]
    if folder is None or not folder.is_dir():
        raise ValueError(
            f"data: {key!r} needs the shared data folder '<dir>/{info['folder']}'; none was found "
            "(set SBERT_ALIGN_DATA_DIR to the folder that holds it, or pass a path)."
        )
    train = find_split_file(folder, [info["train"]])
    test = find_split_file(folder, [info["test"]])
    if train is None or test is None:
        raise ValueError(f"data: {folder} lacks {info['train']}.* or {info['test']}.*.")
    return NamedSet(key, train, test, info["label"], None, str(folder))
