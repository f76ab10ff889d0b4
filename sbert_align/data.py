"""Loading labelled text sets: local CSV / TSV / JSONL files, named sets, Hugging Face datasets; label encoding;
train / validation splits; pair utilities.

Two kinds of sets, one container (:class:`SplitSet`):

* classification: a ``text`` column and a ``label`` column (class names or ids);
* pairs: ``text1``, ``text2`` and a ``label`` (0/1) or a similarity ``score``.

Names that :func:`load_splits` understands:

* ``trec6`` / ``trec50``: the bundled TREC question set (``label_coarse`` / ``label_fine``), always offline;
* ``banking77``, ``clinc150``, ``sst2``, ``mrpc``, ``stsb``, ``quora``: the project's shared offline copies,
  found under ``$SBERT_ALIGN_DATA_DIR``, else ``./shared/data``, ``../shared/data`` or ``<repo>/../shared/data``;
* a path to a ``.csv`` / ``.tsv`` / ``.jsonl`` file (a test split is carved from it, seeded) or to a folder
  holding ``train.*`` and ``test.*`` (``dev.*`` / ``val.*`` when there is no test);
* ``hf:<name>`` (or any ``owner/name`` that is not a local path): ``datasets.load_dataset``, when the hub is
  reachable.

Validation splits are always carved from train (:func:`train_validation_split`), never from test.

Example::

    from sbert_align.data import load_splits, train_validation_split

    data = load_splits("trec6")
    data = train_validation_split(data, validation_fraction=0.1, seed=0)
    train = data.dataset("train")          # datasets.Dataset with columns text, label (int ids)
    print(data.label_names[:3], len(data.texts("validation")))
"""

from __future__ import annotations

import csv
import json
import os
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "SplitSet",
    "LabelEncoding",
    "encode_labels",
    "decode_labels",
    "read_table",
    "load_splits",
    "from_hf_dataset",
    "train_validation_split",
    "symmetrize_pairs",
    "PairLeakWarning",
    "shared_data_dir",
    "bundled_path",
    "NAMED_SETS",
    "DEFAULT_DEMO_DATA",
]

DEFAULT_DEMO_DATA = "trec6"
_BUNDLED = Path(__file__).resolve().parent / "_bundled"

#: name -> (folder under the shared data dir, train file stem, test file stem, label column, text columns)
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
_TEXT_CANDIDATES = (
    ("text1", "text2"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("text",),
    ("sentence",),
)
_LABEL_CANDIDATES = ("label", "labels", "label_coarse", "score", "intent", "category")
_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


class PairLeakWarning(UserWarning):
    """A held-out pair (in either order) also appears in train."""


# ----------------------------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class LabelEncoding:
    """Both directions between label names and integer class ids (ids are positions in ``names``)."""

    names: tuple[str, ...]

    @classmethod
    def fit(cls, *label_lists: Iterable[Any]) -> LabelEncoding:
        """Sorted union of the labels' string forms (numbers sort numerically)."""
        values = {_label_key(v) for labels in label_lists for v in labels}
        if not values:
            raise ValueError("labels: expected at least one label, got none.")
        return cls(tuple(name for _, name in sorted(values)))

    def encode(self, labels: Iterable[Any]) -> list[int]:
        index = {name: i for i, name in enumerate(self.names)}
        out = []
        for v in labels:
            name = _label_key(v)[1]
            if name not in index:
                raise ValueError(f"labels: {v!r} is not one of the {len(self.names)} known classes.")
            out.append(index[name])
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.names):
                raise ValueError(f"ids: {i} is outside 0..{len(self.names) - 1}.")
            out.append(self.names[i])
        return out


def _label_key(v: Any) -> tuple[tuple[int, float, str], str]:
    """Sort key and string form of a label: numbers first, numerically (so '2' < '10'), then strings."""
    if isinstance(v, bool):
        v = int(v)
    name = str(v).strip() if not isinstance(v, float) or not v.is_integer() else str(int(v))
    try:
        return (0, float(name), ""), name
    except ValueError:
        return (1, 0.0, name), name


def encode_labels(labels: Sequence[Any], names: Sequence[str] | None = None) -> tuple[list[int], list[str]]:
    """Class names (or ids) -> integer ids. Returns ``(ids, names)``; ``names`` is sorted when not given."""
    enc = LabelEncoding(tuple(str(n) for n in names)) if names is not None else LabelEncoding.fit(labels)
    return enc.encode(labels), list(enc.names)


def decode_labels(ids: Sequence[int], names: Sequence[str]) -> list[str]:
    """Integer ids -> class names."""
    return LabelEncoding(tuple(names)).decode(ids)


# ----------------------------------------------------------------------------------------------- container
@dataclass
class SplitSet:
    """A labelled text set that has been split: ``train``, ``test`` and optionally ``validation``.

    Each split is a dict of equal-length columns: the text columns (``text``, or ``text1`` and ``text2``) and
    ``label``. Class labels are stored as integer ids into ``label_names``; a similarity score (STS-B) is stored
    as a float and ``label_names`` is ``None``.
    """

    name: str
    splits: dict[str, dict[str, list]]
    text_columns: tuple[str, ...] = ("text",)
    label_names: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for required in ("train", "test"):
            if required not in self.splits:
                raise ValueError(f"splits: a {required!r} split is required, got {sorted(self.splits)}.")
        for split, cols in self.splits.items():
            missing = [c for c in (*self.text_columns, "label") if c not in cols]
            if missing:
                raise ValueError(f"splits[{split!r}]: missing columns {missing}.")
            lengths = {len(cols[c]) for c in (*self.text_columns, "label")}
            if len(lengths) != 1:
                raise ValueError(f"splits[{split!r}]: columns have different lengths {sorted(lengths)}.")
        if len(self.splits["train"]["label"]) == 0:
            raise ValueError(f"{self.name}: the train split is empty.")

    @property
    def is_pairs(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def num_classes(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)

    def split_names(self) -> list[str]:
        return list(self.splits)

    def _get(self, split: str) -> dict[str, list]:
        if split not in self.splits:
            raise ValueError(f"split: {split!r} is not one of {sorted(self.splits)}.")
        return self.splits[split]

    def texts(self, split: str = "train") -> list[str]:
        """The texts of a classification split (for pairs, use :meth:`pairs`)."""
        if self.is_pairs:
            raise ValueError(f"{self.name} is a pair set; use .pairs(split) instead of .texts(split).")
        return list(self._get(split)[self.text_columns[0]])

    def pairs(self, split: str = "train") -> list[tuple[str, str]]:
        cols = self._get(split)
        if not self.is_pairs:
            raise ValueError(f"{self.name} is not a pair set.")
        return list(zip(cols[self.text_columns[0]], cols[self.text_columns[1]]))

    def labels(self, split: str = "train") -> list:
        return list(self._get(split)["label"])

    def label_strings(self, split: str = "train") -> list[str]:
        labels = self.labels(split)
        return decode_labels(labels, self.label_names) if self.label_names is not None else [str(v) for v in labels]

    def dataset(self, split: str = "train"):
        """The split as a ``datasets.Dataset`` with the columns the sbert-align losses expect."""
        from datasets import Dataset

        cols = self._get(split)
        return Dataset.from_dict({c: list(cols[c]) for c in (*self.text_columns, "label")})

    def subsample(self, split: str, n: int | None, seed: int = 0) -> SplitSet:
        """Keep at most ``n`` rows of one split (seeded, order kept); ``None`` keeps everything."""
        cols = self._get(split)
        size = len(cols["label"])
        if n is None or n >= size:
            return self
        if n <= 0:
            raise ValueError(f"n: expected a positive number of rows, got {n}.")
        keep = sorted(random.Random(seed).sample(range(size), n))
        new = dict(self.splits)
        new[split] = {c: [v[i] for i in keep] for c, v in cols.items()}
        return replace(self, splits=new)

    def summary(self) -> str:
        sizes = ", ".join(f"{s} {len(c['label'])}" for s, c in self.splits.items())
        kind = "pairs" if self.is_pairs else "texts"
        classes = f", {self.num_classes} classes" if self.label_names is not None else ", scores"
        return f"{self.name}: {kind}, {sizes}{classes}"


# ----------------------------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` / ``.tsv`` (header row) or ``.jsonl`` / ``.json`` (one object per line, or a list)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data: no such file {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    if suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        stripped = text.lstrip()
        if suffix == ".json" and stripped.startswith("["):
            rows = json.loads(text)
        else:
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"data: {path.name} line {n} is not valid JSON ({e.msg}).") from None
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"data: {path.name} must hold one JSON object per line.")
        return rows
    raise ValueError(f"data: unsupported file type {suffix!r} ({path.name}); expected one of {_SUFFIXES}.")


def _pick_columns(
    columns: Sequence[str], text_columns: Sequence[str] | None, label_column: str | None, where: str
) -> tuple[tuple[str, ...], str]:
    cols = set(columns)
    if text_columns is None:
        for cand in _TEXT_CANDIDATES:
            if all(c in cols for c in cand):
                text_columns = cand
                break
        else:
            raise ValueError(
                f"{where}: cannot find the text column(s) among {sorted(cols)}; expected 'text' or 'text1'+'text2' "
                "(or pass text_columns / --text-column)."
            )
    missing = [c for c in text_columns if c not in cols]
    if missing:
        raise ValueError(f"{where}: text column(s) {missing} not found among {sorted(cols)}.")
    if label_column is None:
        label_column = next((c for c in _LABEL_CANDIDATES if c in cols), None)
        if label_column is None:
            raise ValueError(
                f"{where}: cannot find a label column among {sorted(cols)} (or pass label_column / --label-column)."
            )
    elif label_column not in cols:
        raise ValueError(f"{where}: label column {label_column!r} not found among {sorted(cols)}.")
    return tuple(text_columns), label_column


def _is_score_column(label_column: str, values: Iterable[Any]) -> bool:
    if label_column == "score":
        return True
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return False
        if not f.is_integer():
            return True
    return False


def _build(
    name: str,
    raw: Mapping[str, Sequence[Mapping[str, Any]]],
    text_columns: Sequence[str] | None,
    label_column: str | None,
    source: str,
) -> SplitSet:
    """Raw rows per split -> :class:`SplitSet` (shared column choice, shared label encoding)."""
    first = next(iter(raw.values()))
    if not first:
        raise ValueError(f"{name}: the {next(iter(raw))} split is empty.")
    text_columns, label_column = _pick_columns(list(first[0].keys()), text_columns, label_column, name)
    for split, rows in raw.items():
        if rows:
            _pick_columns(list(rows[0].keys()), text_columns, label_column, f"{name} ({split})")
    all_labels = [r[label_column] for rows in raw.values() for r in rows]
    scores = _is_score_column(label_column, all_labels)
    enc = None if scores else LabelEncoding.fit(all_labels)
    splits: dict[str, dict[str, list]] = {}
    for split, rows in raw.items():
        cols: dict[str, list] = {c: ["" if r[c] is None else str(r[c]) for r in rows] for c in text_columns}
        labels = [r[label_column] for r in rows]
        cols["label"] = [float(v) for v in labels] if enc is None else enc.encode(labels)
        splits[split] = cols
    rename = {
        "sentence": "text",
        "sentence1": "text1",
        "sentence2": "text2",
        "question1": "text1",
        "question2": "text2",
    }
    out_cols = tuple(rename.get(c, c) for c in text_columns)
    splits = {s: {rename.get(c, c): v for c, v in cols.items()} for s, cols in splits.items()}
    return SplitSet(
        name=name,
        splits=splits,
        text_columns=out_cols,
        label_names=None if enc is None else list(enc.names),
        source=source,
    )


def bundled_path(name: str) -> Path:
    """Path of a bundled file (``trec_train.csv``, ``trec_test.csv``)."""
    return _BUNDLED / name


def shared_data_dir() -> Path | None:
    """The shared offline data folder: ``$SBERT_ALIGN_DATA_DIR``, else ``./shared/data``, ``../shared/data``,
    ``<repo>/../shared/data``; ``None`` when none exists."""
    candidates = []
    if os.environ.get("SBERT_ALIGN_DATA_DIR"):
        candidates.append(Path(os.environ["SBERT_ALIGN_DATA_DIR"]))
    cwd = Path.cwd()
    repo = Path(__file__).resolve().parents[1]
    candidates += [cwd / "shared" / "data", cwd.parent / "shared" / "data", repo.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _find_split_file(folder: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        for suffix in _SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _carve(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_out = max(1, round(len(rows) * fraction))
    held = set(order[:n_out])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def load_splits(
    spec: str | os.PathLike,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> SplitSet:
    """Load a labelled set by short name, local path or Hugging Face name (see the module docstring).

    Args:
        spec: ``trec6``, ``trec50``, ``banking77``, ... ; a file or folder path; ``hf:<name>``.
        text_columns: text column(s), e.g. ``["question"]``; detected when ``None``.
        label_column: the label column; detected when ``None`` (``label``, ``label_coarse``, ``score``, ...).
        test_fraction: for a single file without a test split, the share carved off (seeded) as test.
        seed: seed of that carving.

    Raises:
        ValueError: unknown name, missing shared data, unreadable file, missing columns (one clear message).
    """
    spec_str = str(spec)
    key = _ALIASES.get(spec_str.lower(), spec_str.lower())
    path = Path(spec_str).expanduser()
    if key in NAMED_SETS and not path.exists():
        info = NAMED_SETS[key]
        if info.get("bundled"):
            raw = {
                "train": read_table(bundled_path("trec_train.csv")),
                "test": read_table(bundled_path("trec_test.csv")),
            }
            return _build(
                key, raw, text_columns or ("text",), label_column or info["label"], "bundled TREC (Li & Roth 2002)"
            )
        root = shared_data_dir()
        folder = None if root is None else root / info["folder"]
        if folder is None or not folder.is_dir():
            raise ValueError(
                f"data: {spec_str!r} needs the shared data folder '<dir>/{info['folder']}'; none was found "
                "(set SBERT_ALIGN_DATA_DIR to the folder that holds it, or pass a path)."
            )
        train = _find_split_file(folder, [info["train"]])
        test = _find_split_file(folder, [info["test"]])
        if train is None or test is None:
            raise ValueError(f"data: {folder} lacks {info['train']}.* or {info['test']}.*.")
        raw = {"train": read_table(train), "test": read_table(test)}
        default_label = label_column or (info["label"] if info["label"] in raw["train"][0] else None)
        return _build(key, raw, text_columns, default_label, str(folder))
    if path.is_file():
        rows = read_table(path)
        if not rows:
            raise ValueError(f"data: {path} has no rows.")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}.")
        train, test = _carve(rows, test_fraction, seed)
        out = _build(path.stem, {"train": train, "test": test}, text_columns, label_column, str(path))
        out.notes.append(f"test split carved from {path.name}: {test_fraction:.0%}, seed {seed}")
        return out
    if path.is_dir():
        train = _find_split_file(path, ["train"])
        test = _find_split_file(path, ["test", "dev", "val", "validation"])
        if train is None or test is None:
            raise ValueError(f"data: folder {str(path)!r} must hold train.* and test.* (csv, tsv or jsonl).")
        raw = {"train": read_table(train), "test": read_table(test)}
        return _build(path.name, raw, text_columns, label_column, str(path))
    if path.suffix.lower() in _SUFFIXES and not spec_str.startswith("hf:"):
        raise ValueError(f"data: no such file {spec_str!r}.")
    if spec_str.startswith("hf:") or ("/" in spec_str and not spec_str.startswith((".", "/", "~"))):
        return _load_hub(spec_str.removeprefix("hf:"), text_columns, label_column, test_fraction, seed)
    known = ", ".join(sorted(NAMED_SETS))
    raise ValueError(f"data: {spec_str!r} is neither a known name ({known}), an existing path, nor hf:<name>.")


def _load_hub(
    name: str, text_columns: Sequence[str] | None, label_column: str | None, test_fraction: float, seed: int
) -> SplitSet:
    try:
        import datasets

        ds = datasets.load_dataset(name)
    except Exception as e:  # offline, unknown name, gated, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"data: could not load {name!r} from the Hugging Face hub ({first[:200]}).") from None
    return from_hf_dataset(ds, name=name, text_columns=text_columns, label_column=label_column,
                           test_fraction=test_fraction, seed=seed)  # fmt: skip


def from_hf_dataset(
    ds,
    *,
    name: str = "hf",
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> SplitSet:
    """A ``datasets.DatasetDict`` (or one ``Dataset``) -> :class:`SplitSet`.

    Class labels of a ``ClassLabel`` feature keep their names. Without a ``test`` split, ``validation`` is used
    as test; a single split gets a seeded test carve-out.
    """
    from datasets import Dataset

    parts = {"train": ds} if isinstance(ds, Dataset) else dict(ds)
    if "train" not in parts:
        raise ValueError(f"{name}: no 'train' split (has {sorted(parts)}).")
    test_key = next((k for k in ("test", "validation", "dev", "val") if k in parts), None)

    def rows_of(d) -> list[dict]:
        rows = d.to_list()
        feats = d.features
        for col, feat in feats.items():
            if hasattr(feat, "names") and hasattr(feat, "int2str"):
                for r in rows:
                    r[col] = feat.int2str(int(r[col]))
        return rows

    if test_key is None:
        train, test = _carve(rows_of(parts["train"]), test_fraction, seed)
    else:
        train, test = rows_of(parts["train"]), rows_of(parts[test_key])
    return _build(name, {"train": train, "test": test}, text_columns, label_column, f"hf:{name}")


# ----------------------------------------------------------------------------------------------- splits, pairs
def train_validation_split(
    data: SplitSet, validation_fraction: float = 0.1, seed: int = 0, stratify: bool = True
) -> SplitSet:
    """Carve a seeded ``validation`` split out of ``train`` (never out of test).

    Stratified by class when labels are classes; the carving is reproducible for a given seed.
    """
    if "validation" in data.splits:
        raise ValueError(f"{data.name} already has a validation split.")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction: expected a number in (0, 1), got {validation_fraction}.")
    train = data.splits["train"]
    n = len(train["label"])
    if n < 2:
        raise ValueError(f"{data.name}: train has {n} row(s); cannot carve a validation split.")
    rng = random.Random(seed)
    if stratify and data.label_names is not None:
        by_class: dict[int, list[int]] = {}
        for i, y in enumerate(train["label"]):
            by_class.setdefault(y, []).append(i)
        held: set[int] = set()
        for idx in by_class.values():
            rng.shuffle(idx)
            k = int(round(len(idx) * validation_fraction))
            if len(idx) >= 2:
                k = min(max(k, 1), len(idx) - 1)  # keep each class on both sides when possible
            held.update(idx[:k])
    else:
        order = list(range(n))
        rng.shuffle(order)
        held = set(order[: max(1, round(n * validation_fraction))])
    if not held or len(held) == n:
        raise ValueError(f"{data.name}: validation_fraction {validation_fraction} leaves an empty split.")
    new = dict(data.splits)
    new["train"] = {c: [v[i] for i in range(n) if i not in held] for c, v in train.items()}
    new["validation"] = {c: [v[i] for i in range(n) if i in held] for c, v in train.items()}
    out = replace(
        data, splits=new, notes=[*data.notes, f"validation carved from train: {validation_fraction:.0%}, seed {seed}"]
    )
    return out


def symmetrize_pairs(data, *, held_out: Sequence[str] = ("validation", "test")):
    """Add the swapped copy ``(text2, text1, label)`` of every *train* pair; held-out splits stay as they are.

    Pairs must be symmetrised only after the split: swapped copies made before the split put the same pair on both
    sides of it (leakage). So this function only accepts split data: a :class:`SplitSet` of pairs, or a
    ``datasets.DatasetDict`` with a ``train`` split and ``text1`` / ``text2`` columns. A single ``Dataset``, a list
    or a dict of columns is refused with a ``ValueError``. It warns loudly (:class:`PairLeakWarning`) when a pair of
    a held-out split (in either order) also appears in train, before symmetrising.

    Returns an object of the same kind with ``train`` symmetrised.
    """
    from datasets import Dataset, DatasetDict

    if isinstance(data, SplitSet):
        if not data.is_pairs:
            raise ValueError(f"symmetrize_pairs: {data.name} is not a pair set (text columns {data.text_columns}).")
        c1, c2 = data.text_columns
        splits = data.splits
    elif isinstance(data, DatasetDict):
        if "train" not in data:
            raise ValueError("symmetrize_pairs: the DatasetDict has no 'train' split; split the data first.")
        cols = data["train"].column_names
        if "text1" not in cols or "text2" not in cols:
            raise ValueError(f"symmetrize_pairs: expected 'text1' and 'text2' columns, got {cols}.")
        c1, c2 = "text1", "text2"
        splits = {k: {c: data[k][c] for c in data[k].column_names} for k in data}
    else:
        raise ValueError(
            "symmetrize_pairs: refusing unsplit data "
            f"({type(data).__name__}); split it first (train_validation_split / a DatasetDict with 'train' and a "
            "held-out split), because swapped copies made before the split leak pairs between train and validation."
        )
    if not any(k in splits for k in held_out):
        raise ValueError(
            f"symmetrize_pairs: no held-out split ({', '.join(held_out)}) found in {sorted(splits)}; split the data "
            "first, because swapped copies made before the split leak pairs between train and validation."
        )
    train = splits["train"]
    train_keys = {frozenset((a, b)) for a, b in zip(train[c1], train[c2])}
    for split in held_out:
        if split not in splits:
            continue
        leaked = sum(frozenset((a, b)) in train_keys for a, b in zip(splits[split][c1], splits[split][c2]))
        if leaked:
            warnings.warn(
                f"symmetrize_pairs: {leaked} pair(s) of the {split!r} split also appear in train (in either order): "
                f"the {split} scores will be inflated by leakage. De-duplicate before training.",
                PairLeakWarning,
                stacklevel=2,
            )
    swapped = {c: list(v) for c, v in train.items()}
    swapped[c1], swapped[c2] = list(train[c2]), list(train[c1])
    new_train = {c: list(train[c]) + swapped[c] for c in train}
    if isinstance(data, SplitSet):
        new = dict(data.splits)
        new["train"] = new_train
        return replace(data, splits=new, notes=[*data.notes, "train pairs symmetrised (swapped copies added)"])
    out = DatasetDict(dict(data))
    out["train"] = Dataset.from_dict(new_train, features=data["train"].features)
    return out
