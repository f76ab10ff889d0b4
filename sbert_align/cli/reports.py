"""What the commands write: Markdown tables, JSON, CSV and charts, every file atomically (see
:mod:`sbert_align.files`).

``compare`` writes its four outputs (``<stem>.md``, ``.csv``, ``.png``, ``.json``) only for a complete run: all four
are built under temporary names first, then renamed into place one by one, the JSON last: ``<stem>.json`` is the
commit marker of the set (see :func:`write_compare_report`). While it runs, each finished model is recorded in
``<stem>.partial.json`` (``"complete": false``, with a fingerprint of each local model folder), which a rerun with the
same settings reuses for the models whose folders are unchanged, and a complete run deletes. An interrupted run thus
never touches the outputs of an earlier complete one.

Example::

    from sbert_align.cli.reports import markdown_table

    print(markdown_table(["model", "accuracy"], [["minilm-l6", 0.91234]]))
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..files import atomic_path, atomic_write_json

__all__ = [
    "markdown_table",
    "compare_paths",
    "write_compare_report",
    "write_compare_partial",
    "read_compare_partial",
]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats with 4 decimals.

    Example::

        from sbert_align.cli.reports import markdown_table

        markdown_table(["metric", "value"], [["accuracy", 0.9]])   # '| metric | value |\\n|---|---|\\n| accuracy | 0.9000 |'
    """

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def compare_paths(out: str | Path, stem: str) -> dict[str, Path]:
    """The files of a ``compare`` run: ``md``, ``csv``, ``json``, ``png`` and ``partial`` (the progress record).

    Example::

        from sbert_align.cli.reports import compare_paths

        compare_paths("cmp", "frozen_knn")["partial"]            # PosixPath('cmp/frozen_knn.partial.json')
    """
    out = Path(out)
    paths = {kind: out / f"{stem}.{kind}" for kind in ("md", "csv", "json", "png")}
    paths["partial"] = out / f"{stem}.partial.json"
    return paths


def _compare_markdown(rows: Sequence[Mapping[str, Any]], k: int, seconds: float) -> str:
    datasets = list(dict.fromkeys(r["data"] for r in rows))
    series = list(dict.fromkeys((r["model"], r["pooling"]) for r in rows))
    acc = {(r["model"], r["pooling"], r["data"]): r["accuracy"] for r in rows}
    table = markdown_table(
        ["model", "pooling", *datasets],
        [[m, p, *[acc.get((m, p, d), float("nan")) for d in datasets]] for m, p in series],
    )
    n = {r["data"]: (r["n_train"], r["n_test"]) for r in rows}
    sizes = ", ".join(f"{d} {a} train / {b} test" for d, (a, b) in n.items())
    paths = {r["model"]: r.get("model_path", r["model"]) for r in rows}
    models = ", ".join(f"`{m}` = `{p}`" for m, p in paths.items() if m != p)
    return (
        f"# Frozen encoders: kNN accuracy (k={k}, cosine, majority vote)\n\n"
        f"References: the train split; queries: the test split ({sizes}). No training: each encoder's transformer "
        "is run once per text and pooled three ways: `cls` = first token of the last layer, `mean` = masked mean "
        "of the last layer, `layer-mean` = mean over all transformer layers' outputs, then the masked token mean."
        + (f" Models: {models}." if models else "")
        + f"\n\n{table}\n\nProduced by `sbert-align compare` in {seconds:.0f} s on this machine.\n"
    )


def write_compare_report(
    rows: Sequence[Mapping[str, Any]], out: str | Path, stem: str, *, k: int, seconds: float, settings: Mapping
) -> dict[str, Path]:
    """Write the complete outputs of ``compare`` (Markdown table, CSV, bar chart, JSON with ``"complete": true``).

    What is guaranteed:

    * Each file is atomic: a reader sees an earlier version or the new one, never a half-written file.
    * All four are built under temporary names first; an exception while building them (Ctrl-C included) leaves the
      earlier outputs exactly as they were.
    * ``<stem>.json`` is the commit marker of the set. Once everything is built, the earlier JSON is deleted, then
      the Markdown, CSV and PNG are renamed into place, and the new JSON is renamed in last, only after the three
      others. So whenever ``<stem>.json`` exists, the other three files beside it are the ones it describes (its
      ``rows``); a run killed or failing during the renames can leave a mix of new and earlier Markdown / CSV / PNG,
      but then without a JSON, which marks the set as incomplete (the rerun that rewrites it reuses every row from
      ``<stem>.partial.json``).
    * The four files are *not* replaced as one atomic group (no file system offers that for separate files).

    The progress record ``<stem>.partial.json`` is deleted once the JSON is in place.

    Args:
        rows: one dict per (model, pooling, dataset) with at least ``model``, ``pooling``, ``data``, ``accuracy``,
            ``n_train``, ``n_test``; rows are never merged (labels must be unique per model).
        out: output folder (created).
        stem: file stem.
        k: neighbours of the kNN (for titles).
        seconds: wall time (for the Markdown footer).
        settings: what the run depended on (data, poolings, k, ...), recorded in the JSON.

    Returns:
        ``md``, ``csv``, ``json``, ``png`` -> path.

    Example::

        from sbert_align.cli.reports import write_compare_report

        rows = [{"model": "m", "pooling": "mean", "data": "trec6", "accuracy": 0.9, "n_train": 10, "n_test": 5}]
        write_compare_report(rows, "cmp", "frozen_knn", k=5, seconds=1.0, settings={})
    """
    from ..plotting import plot_grouped_bars

    if not rows:
        raise ValueError("rows: nothing to report.")
    keys = [(r["model"], r["pooling"], r["data"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("rows: two rows share a (model, pooling, data); give each model a unique label.")
    paths = compare_paths(out, stem)
    datasets = list(dict.fromkeys(r["data"] for r in rows))
    series = list(dict.fromkeys((r["model"], r["pooling"]) for r in rows))
    acc = {(r["model"], r["pooling"], r["data"]): r["accuracy"] for r in rows}
    values = {d: {f"{m} / {p}": acc[(m, p, d)] for m, p in series if (m, p, d) in acc} for d in datasets}
    fields = list(dict.fromkeys(f for r in rows for f in r))
    record = {"complete": True, "k": k, "seconds": round(seconds, 1), "settings": dict(settings), "rows": list(rows)}
    json_text = json.dumps(record, indent=2, default=str) + "\n"
    # ExitStack leaves the contexts in reverse order of entry: entering the JSON first makes its rename the last one,
    # and a failing rename makes every context left after it delete its temporary file instead (so no new JSON).
    with ExitStack() as stack:
        tmp = {kind: stack.enter_context(atomic_path(paths[kind])) for kind in ("json", "png", "csv", "md")}
        plot_grouped_bars(values, tmp["png"], ylabel=f"kNN accuracy (k={k})", title="Frozen encoders: kNN accuracy")
        with open(tmp["csv"], "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        tmp["json"].write_text(json_text, encoding="utf-8")
        tmp["md"].write_text(_compare_markdown(rows, k, seconds), encoding="utf-8")
        paths["json"].unlink(missing_ok=True)  # everything is built: the earlier marker goes before any rename
    paths["partial"].unlink(missing_ok=True)
    return {kind: paths[kind] for kind in ("md", "csv", "json", "png")}


def write_compare_partial(
    rows: Sequence[Mapping[str, Any]],
    out: str | Path,
    stem: str,
    *,
    models: Sequence[str],
    models_done: Sequence[str],
    settings: Mapping[str, Any],
    fingerprints: Mapping[str, str | None] | None = None,
) -> Path:
    """Record the models a ``compare`` run has finished in ``<stem>.partial.json`` (``"complete": false``).

    Args:
        rows: the finished rows.
        out: output folder.
        stem: file stem.
        models: every model argument of the run.
        models_done: the model arguments whose rows are in ``rows``.
        settings: what the rows depend on; a rerun reuses them only when its settings are equal.
        fingerprints: model argument -> :func:`~sbert_align.cli.models.model_fingerprint` (``None`` for an alias or
            a hub name), taken before the models were loaded; a rerun reuses a model's rows only when its
            fingerprint is unchanged.

    Example::

        from sbert_align.cli.reports import write_compare_partial

        write_compare_partial([], "cmp", "frozen_knn", models=["a", "b"], models_done=[], settings={"k": 5})
    """
    fingerprints = fingerprints or {}
    record = {
        "complete": False,
        "note": "an unfinished `sbert-align compare` run; rerun the same command to finish it",
        "settings": dict(settings),
        "models": list(models),
        "models_done": list(models_done),
        "fingerprints": {m: fingerprints.get(m) for m in models_done},
        "rows": list(rows),
    }
    return atomic_write_json(compare_paths(out, stem)["partial"], record)


def read_compare_partial(
    out: str | Path,
    stem: str,
    settings: Mapping[str, Any],
    fingerprints: Mapping[str, str | None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Rows of an interrupted ``compare`` run that a rerun can reuse: model argument -> its rows.

    Empty when there is no ``<stem>.partial.json``, when it is unreadable, or when its settings differ from
    ``settings`` (a JSON round trip of them). A model is left out when its recorded fingerprint differs from its
    entry in ``fingerprints`` (a local folder retrained since; a missing entry counts as ``None``).

    Example::

        from sbert_align.cli.reports import read_compare_partial

        done = read_compare_partial("cmp", "frozen_knn", {"k": 5})   # {} without an earlier interrupted run
    """
    path = compare_paths(out, stem)["partial"]
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("complete") is not False:
        return {}
    if record.get("settings") != json.loads(json.dumps(dict(settings), default=str)):
        return {}
    fingerprints = fingerprints or {}
    recorded = record.get("fingerprints")
    recorded = recorded if isinstance(recorded, dict) else {}
    done = {
        m for m in record.get("models_done") or [] if isinstance(m, str) and recorded.get(m) == fingerprints.get(m)
    }
    out_rows: dict[str, list[dict[str, Any]]] = {m: [] for m in done}
    for r in record.get("rows") or []:
        if isinstance(r, dict) and r.get("model_path") in done:
            out_rows[r["model_path"]].append(r)
    return {m: rs for m, rs in out_rows.items() if rs}
