"""What the commands write: Markdown tables, JSON, CSV and charts, every file atomically (see
:mod:`sbert_align.files`).

``compare`` writes its four outputs (``<stem>.md``, ``.csv``, ``.png``, ``.json``; with fine-tuned cells a fifth,
``<stem>.aligned.png``) only for a complete run: all are built under temporary names first, then renamed into place one
by one, the JSON last: ``<stem>.json`` is the commit marker of the set (see :func:`write_compare_report`). While it
runs, each finished model, and each fine-tuned cell, is recorded in ``<stem>.partial.json`` (``"complete": false``,
with a fingerprint of each local model folder), which a rerun with the same settings reuses for the models whose
folders are unchanged, and a complete run deletes. With ``--concat`` each finished model's frozen embeddings are kept
beside it (``<stem>.partial.<hash>.safetensors``, :func:`write_compare_embeddings`) for the concatenation rows of a
resumed run, and deleted with it. An interrupted run thus never touches the outputs of an earlier complete one.

Example::

    from sbert_align.cli.reports import markdown_table

    print(markdown_table(["model", "accuracy"], [["minilm-l6", 0.91234]]))
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import math
import re
import warnings
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
    "frozen_aligned_correlation",
    "compare_embeddings_path",
    "write_compare_embeddings",
    "read_compare_embeddings",
]

#: fewest cells a rank correlation is reported for (two points always give +1 or -1)
MIN_CORRELATION_CELLS = 3
#: most cells whose rank correlation gets an exact permutation p-value (8! = 40,320 pairings)
EXACT_P_MAX_CELLS = 8


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
    """The files of a ``compare`` run: ``md``, ``csv``, ``json``, ``png``, ``aligned_png`` (the frozen-vs-aligned
    scatter, with ``--finetune``) and ``partial`` (the progress record).

    Example::

        from sbert_align.cli.reports import compare_paths

        compare_paths("cmp", "frozen_knn")["partial"]            # PosixPath('cmp/frozen_knn.partial.json')
    """
    out = Path(out)
    paths = {kind: out / f"{stem}.{kind}" for kind in ("md", "csv", "json", "png")}
    paths["aligned_png"] = out / f"{stem}.aligned.png"
    paths["partial"] = out / f"{stem}.partial.json"
    return paths


def _is_aligned(row: Mapping[str, Any]) -> bool:
    return row.get("aligned_accuracy") is not None


def _exact_spearman_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p-value of Spearman's rho by an exact permutation test: ``scipy.stats.permutation_test`` over all
    ``n!`` pairings of ``x`` with ``y`` (ties keep their average ranks), vectorised."""
    import numpy as np
    from scipy.stats import permutation_test, rankdata

    ry = rankdata(y)
    ry = (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())

    def rho(xs: Any, axis: int = -1) -> Any:
        rx = rankdata(xs, axis=axis)
        rx = rx - rx.mean(axis=axis, keepdims=True)
        return (rx @ ry) / np.linalg.norm(rx, axis=axis)

    res = permutation_test(
        (np.asarray(x, dtype=float),), rho, permutation_type="pairings", vectorized=True, n_resamples=np.inf
    )
    return float(res.pvalue)


def _spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """``{"n", "spearman", "p_value", "p_method"}``; ``None`` values below :data:`MIN_CORRELATION_CELLS` cells or when a
    side is constant (no ranking to compare). The p-value is exact (all pairings) up to :data:`EXACT_P_MAX_CELLS`
    cells, where scipy's t approximation is far off (it gives p = 0 for 3 cells in the same order, the exact value
    being 1/3); above that, scipy's."""
    from scipy.stats import spearmanr

    n = len(x)
    if n < MIN_CORRELATION_CELLS:
        return {"n": n, "spearman": None, "p_value": None, "p_method": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input and returns NaN
        res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    if not math.isfinite(rho):
        return {"n": n, "spearman": None, "p_value": None, "p_method": None}
    if n <= EXACT_P_MAX_CELLS:
        return {"n": n, "spearman": rho, "p_value": _exact_spearman_p(x, y), "p_method": "exact permutation"}
    return {"n": n, "spearman": rho, "p_value": p if math.isfinite(p) else None, "p_method": "t approximation"}


def frozen_aligned_correlation(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Spearman rank correlation between frozen ``accuracy`` and ``aligned_accuracy`` over the fine-tuned cells.

    Does the frozen kNN accuracy of an (encoder, pooling) tell which will be best after fine-tuning? Over all cells
    with an ``aligned_accuracy`` (every model, pooling and data set; the concatenation rows have none), and per data
    set; ``scipy.stats.spearmanr`` (ties get average ranks). A correlation needs at least
    :data:`MIN_CORRELATION_CELLS` cells: with fewer (and when one side is constant) ``spearman`` and ``p_value`` are
    ``None``; data sets with fewer cells are left out of ``per_data``. The two-sided p-value is an exact permutation
    test (``scipy.stats.permutation_test`` over every pairing of the cells) up to 8 cells, else scipy's t
    approximation (``p_method`` says which).

    Args:
        rows: the rows of a ``compare`` run.

    Returns:
        ``None`` when no row is fine-tuned; else ``{"method": "spearman", "all": {"n", "spearman", "p_value",
        "p_method"}, "per_data": {data: {...}}}``.

    Example::

        from sbert_align.cli.reports import frozen_aligned_correlation

        rows = [{"data": "d", "accuracy": a, "aligned_accuracy": b} for a, b in [(0.5, 0.8), (0.6, 0.9), (0.7, 0.85)]]
        frozen_aligned_correlation(rows)["all"]["spearman"]        # 0.5
    """
    cells = [r for r in rows if _is_aligned(r)]
    if not cells:
        return None
    per_data = {}
    for d in dict.fromkeys(r["data"] for r in cells):
        sub = [r for r in cells if r["data"] == d]
        if len(sub) >= MIN_CORRELATION_CELLS:
            per_data[d] = _spearman([r["accuracy"] for r in sub], [r["aligned_accuracy"] for r in sub])
    return {
        "method": "spearman",
        "all": _spearman([r["accuracy"] for r in cells], [r["aligned_accuracy"] for r in cells]),
        "per_data": per_data,
    }


def _fmt_corr(c: Mapping[str, Any]) -> str:
    if c["spearman"] is None:
        why = "too few cells" if c["n"] < MIN_CORRELATION_CELLS else "a constant side"
        return f"n/a ({c['n']} cells: {why})"
    p = "" if c["p_value"] is None else f", p = {c['p_value']:.3g}, {c.get('p_method') or 'scipy'}"
    return f"{c['spearman']:.4f} ({c['n']} cells{p})"


def _aligned_markdown(rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], stem: str) -> str:
    cells = [r for r in rows if _is_aligned(r)]
    ft = settings.get("finetune") or {}
    table = markdown_table(
        ["model", "pooling", "data", "frozen", "aligned", "gain", "train steps", "train s"],
        [
            [
                r["model"],
                r["pooling"],
                r["data"],
                r["accuracy"],
                r["aligned_accuracy"],
                r["aligned_accuracy"] - r["accuracy"],
                r.get("train_steps", ""),
                "" if r.get("train_seconds") is None else f"{r['train_seconds']:.1f}",
            ]
            for r in cells
        ],
    )
    corr = frozen_aligned_correlation(rows)
    lines = [f"- all cells: {_fmt_corr(corr['all'])}"]
    lines += [f"- {d}: {_fmt_corr(c)}" for d, c in corr["per_data"].items()]
    limit = f", at most {ft['max_train']} train texts" if ft.get("max_train") else ""
    return (
        "\n## After a brief alignment\n\n"
        "Each (model, pooling, data set) cell: a fresh copy of the frozen encoder, pooled that way, trained with "
        f"`ClassAlignmentLoss` (defaults) for {ft.get('epochs', '?')} epoch(s) of the train split{limit} (batch "
        f"{ft.get('batch_size', '?')}, lr {ft.get('lr', '?')}, {ft.get('warmup_ratio', 0.1):.0%} linear warm-up, seed "
        f"{ft.get('seed', '?')}), then scored by the same kNN.\n\n{table}\n\n"
        "Spearman rank correlation between frozen and aligned kNN accuracy (does the frozen ranking predict the "
        "aligned one?):\n\n" + "\n".join(lines) + "\n\nOver all cells the ranking also holds the data sets' "
        "difficulty (an easy set's cells rank high both frozen and aligned); the per-data-set figures are the ones "
        "that say whether the frozen accuracy picks the encoder and pooling. P-values are two-sided; with few cells "
        f"they are large whatever the ranking.\n\nChart: `{stem}.aligned.png` (one marker per cell; above the "
        "diagonal = gained).\n"
    )


def _compare_markdown(
    rows: Sequence[Mapping[str, Any]],
    k: int,
    seconds: float,
    settings: Mapping[str, Any] | None = None,
    stem: str = "",
) -> str:
    datasets = list(dict.fromkeys(r["data"] for r in rows))
    series = list(dict.fromkeys((r["model"], r["pooling"]) for r in rows))
    acc = {(r["model"], r["pooling"], r["data"]): r["accuracy"] for r in rows}
    table = markdown_table(
        ["model", "pooling", *datasets],
        [[m, p, *[acc.get((m, p, d), float("nan")) for d in datasets]] for m, p in series],
    )
    n = {r["data"]: (r["n_train"], r["n_test"]) for r in rows}
    sizes = ", ".join(f"{d} {a} train / {b} test" for d, (a, b) in n.items())
    paths = {r["model"]: r.get("model_path", r["model"]) for r in rows if not r.get("concat_of")}
    models = ", ".join(f"`{m}` = `{p}`" for m, p in paths.items() if m != p)
    concat = list(dict.fromkeys(r["model"] for r in rows if r.get("concat_of")))
    concat_text = (
        f" {', '.join(f'`{c}`' for c in concat)}: the concatenation of the models' L2-normalised embeddings under "
        "that pooling, normalised again (frozen, no training)."
        if concat
        else ""
    )
    aligned = _aligned_markdown(rows, settings or {}, stem) if any(_is_aligned(r) for r in rows) else ""
    return (
        f"# Frozen encoders: kNN accuracy (k={k}, cosine, majority vote)\n\n"
        f"References: the train split; queries: the test split ({sizes}). No training: each encoder's transformer "
        "is run once per text and pooled three ways: `cls` = first token of the last layer, `mean` = masked mean "
        "of the last layer, `layer-mean` = mean over all transformer layers' outputs, then the masked token mean."
        + (f" Models: {models}." if models else "")
        + concat_text
        + f"\n\n{table}\n{aligned}\nProduced by `sbert-align compare` in {seconds:.0f} s on this machine.\n"
    )


def write_compare_report(
    rows: Sequence[Mapping[str, Any]], out: str | Path, stem: str, *, k: int, seconds: float, settings: Mapping
) -> dict[str, Path]:
    """Write the complete outputs of ``compare`` (Markdown table, CSV, bar chart, JSON with ``"complete": true``; when
    rows carry ``aligned_accuracy``, the frozen-vs-aligned scatter ``<stem>.aligned.png`` too, and the Spearman rank
    correlation of :func:`frozen_aligned_correlation` in the Markdown and in the JSON's ``"correlation"``).

    What is guaranteed:

    * Each file is atomic: a reader sees an earlier version or the new one, never a half-written file.
    * All files are built under temporary names first; an exception while building them (Ctrl-C included) leaves the
      earlier outputs exactly as they were.
    * ``<stem>.json`` is the commit marker of the set. Once everything is built, the earlier JSON is deleted (and an
      earlier ``<stem>.aligned.png`` that the new set does not have), then the Markdown, CSV, PNG (and the scatter)
      are renamed into place, and the new JSON is renamed in last, only after the others. So whenever ``<stem>.json``
      exists, the files beside it are the ones it describes (its ``rows``); a run killed or failing during the
      renames can leave a mix of new and earlier Markdown / CSV / PNG, but then without a JSON, which marks the set as
      incomplete (the rerun that rewrites it reuses every row from ``<stem>.partial.json``).
    * The files are *not* replaced as one atomic group (no file system offers that for separate files).

    The progress record ``<stem>.partial.json`` and the embeddings kept beside it (``<stem>.partial.*.safetensors``)
    are deleted once the JSON is in place.

    Args:
        rows: one dict per (model, pooling, dataset) with at least ``model``, ``pooling``, ``data``, ``accuracy``,
            ``n_train``, ``n_test`` (optionally ``aligned_accuracy``, ``aligned_macro_f1``, ``train_seconds``,
            ``train_steps``); rows are never merged (labels must be unique per model).
        out: output folder (created).
        stem: file stem.
        k: neighbours of the kNN (for titles).
        seconds: wall time (for the Markdown footer).
        settings: what the run depended on (data, poolings, k, ...), recorded in the JSON.

    Returns:
        ``md``, ``csv``, ``json``, ``png`` (and ``aligned_png`` with fine-tuned rows) -> path.

    Example::

        from sbert_align.cli.reports import write_compare_report

        rows = [{"model": "m", "pooling": "mean", "data": "trec6", "accuracy": 0.9, "n_train": 10, "n_test": 5}]
        write_compare_report(rows, "cmp", "frozen_knn", k=5, seconds=1.0, settings={})
    """
    from ..plotting import plot_before_after, plot_grouped_bars

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
    correlation = frozen_aligned_correlation(rows)
    kinds = ("json", "aligned_png", "png", "csv", "md") if correlation is not None else ("json", "png", "csv", "md")
    record = {"complete": True, "k": k, "seconds": round(seconds, 1), "settings": dict(settings)}
    if correlation is not None:
        record["correlation"] = correlation
    record["rows"] = list(rows)
    json_text = json.dumps(record, indent=2, default=str) + "\n"
    # ExitStack leaves the contexts in reverse order of entry: entering the JSON first makes its rename the last one,
    # and a failing rename makes every context left after it delete its temporary file instead (so no new JSON).
    with ExitStack() as stack:
        tmp = {kind: stack.enter_context(atomic_path(paths[kind])) for kind in kinds}
        plot_grouped_bars(values, tmp["png"], ylabel=f"kNN accuracy (k={k})", title="Frozen encoders: kNN accuracy")
        if correlation is not None:
            rho = correlation["all"]["spearman"]
            plot_before_after(
                [
                    (f"{r['model']} / {r['pooling']}", r["data"], r["accuracy"], r["aligned_accuracy"])
                    for r in rows
                    if _is_aligned(r)
                ],
                tmp["aligned_png"],
                xlabel=f"frozen kNN accuracy (k={k})",
                ylabel=f"kNN accuracy after alignment (k={k})",
                title="Frozen vs aligned" + (f" (Spearman {rho:.2f})" if rho is not None else ""),
            )
        with open(tmp["csv"], "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows([{c: json.dumps(v) if isinstance(v, (list, dict)) else v for c, v in r.items()} for r in rows])
        tmp["json"].write_text(json_text, encoding="utf-8")
        tmp["md"].write_text(_compare_markdown(rows, k, seconds, settings, stem), encoding="utf-8")
        paths["json"].unlink(missing_ok=True)  # everything is built: the earlier marker goes before any rename
        if correlation is None:
            paths["aligned_png"].unlink(missing_ok=True)  # an earlier run's scatter is not part of this set
    paths["partial"].unlink(missing_ok=True)
    for f in _partial_embedding_files(out, stem):
        f.unlink(missing_ok=True)
    return {kind: paths[kind] for kind in ("md", "csv", "json", "png", *(("aligned_png",) if correlation else ()))}


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


_EMBEDDINGS_NAME = re.compile(r"\.partial\.[0-9a-f]{16}\.safetensors")


def compare_embeddings_path(out: str | Path, stem: str, model: str) -> Path:
    """Where a ``compare`` run keeps one finished model's frozen embeddings: ``<stem>.partial.<hash>.safetensors``
    (the first 16 hex digits of the SHA-256 of the model argument).

    Example::

        from sbert_align.cli.reports import compare_embeddings_path

        compare_embeddings_path("cmp", "frozen_knn", "minilm-l6")   # PosixPath('cmp/frozen_knn.partial.<hash>.safetensors')
    """
    digest = hashlib.sha256(model.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(out) / f"{stem}.partial.{digest}.safetensors"


def _partial_embedding_files(out: str | Path, stem: str) -> list[Path]:
    folder = Path(out)
    if not folder.is_dir():
        return []
    found = folder.glob(f"{glob.escape(stem)}.partial.*.safetensors")
    return [f for f in found if _EMBEDDINGS_NAME.fullmatch(f.name[len(stem) :])]


def _texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts)).encode("utf-8", "surrogateescape")).hexdigest()


def write_compare_embeddings(
    out: str | Path,
    stem: str,
    model: str,
    texts: Sequence[str],
    embeddings: Mapping[str, Any],
    fingerprint: str | None = None,
) -> Path:
    """Keep one finished model's frozen embeddings (pooling -> ``(len(texts), dim)`` tensor) beside the progress record,
    in safetensors (tensors only, nothing that runs code), written atomically.

    The metadata names the model argument, its fingerprint and a SHA-256 of the texts in order, so that
    :func:`read_compare_embeddings` hands them back only for the same model folder and the same texts.

    Example::

        import torch
        from sbert_align.cli.reports import write_compare_embeddings

        write_compare_embeddings("cmp", "frozen_knn", "minilm-l6", ["a", "b"], {"mean": torch.zeros(2, 384)})
    """
    import torch
    from safetensors.torch import save_file

    tensors = {p: torch.as_tensor(e, dtype=torch.float32).detach().cpu().contiguous() for p, e in embeddings.items()}
    bad = {p: tuple(t.shape) for p, t in tensors.items() if t.ndim != 2 or t.shape[0] != len(texts)}
    if bad:
        raise ValueError(f"embeddings: expected ({len(texts)}, dim) tensors, one row per text, got shapes {bad}.")
    metadata = {
        "model": model,
        "fingerprint": fingerprint or "",
        "texts_sha256": _texts_digest(texts),
        "n_texts": str(len(texts)),
    }
    path = compare_embeddings_path(out, stem, model)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_compare_embeddings(
    out: str | Path,
    stem: str,
    model: str,
    texts: Sequence[str],
    poolings: Sequence[str],
    fingerprint: str | None = None,
) -> dict[str, Any] | None:
    """The frozen embeddings :func:`write_compare_embeddings` kept for ``model``, or ``None`` when there are none, when
    the file is unreadable, or when its model, fingerprint, texts or poolings differ (the caller then encodes again).

    Example::

        from sbert_align.cli.reports import read_compare_embeddings

        emb = read_compare_embeddings("cmp", "frozen_knn", "minilm-l6", ["a", "b"], ["mean"])   # None, or {"mean": ...}
    """
    from safetensors import safe_open

    path = compare_embeddings_path(out, stem, model)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            expected = {
                "model": model,
                "fingerprint": fingerprint or "",
                "texts_sha256": _texts_digest(texts),
                "n_texts": str(len(texts)),
            }
            if any(meta.get(key) != value for key, value in expected.items()) or not set(poolings) <= set(f.keys()):
                return None
            tensors = {p: f.get_tensor(p) for p in poolings}
    except Exception:  # missing, truncated, not safetensors: encode again
        return None
    if any(t.ndim != 2 or t.shape[0] != len(texts) for t in tensors.values()):
        return None
    return tensors
