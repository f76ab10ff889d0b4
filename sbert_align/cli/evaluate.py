"""``sbert-align evaluate``: kNN / KMeans on (text, label) data, query-key top-k on 0/1 pairs, Spearman / Pearson
correlation on score pairs, and MTEB tasks; prints a table and writes JSON.

The evaluator follows the data (see :func:`make_evaluator`), in ``evaluate`` and as the evaluator during ``train``:

* (text, label) data: :class:`~sbert_align.evaluation.KNNEvaluator` (train as references, the split as queries);
* 0/1 pairs (mrpc, quora): :class:`~sbert_align.evaluation.QueryKeyTopKEvaluator` on the positive pairs;
* score pairs (STS-B: float similarity scores, ``label_names is None``): sentence-transformers'
  ``EmbeddingSimilarityEvaluator``, the Spearman (primary) and Pearson correlation between the cosine similarity of
  the two embeddings and the score, the standard STS protocol.

Example::

    sbert-align evaluate --model minilm-l6 --data stsb                 # test_spearman_cosine, test_pearson_cosine
    sbert-align evaluate --model runs/t6/model --data trec6 --metrics knn,kmeans
    sbert-align evaluate --model minilm-l6 --mteb local:trec6 local:stsb --mteb-results mteb-results
    sbert-align evaluate --model runs/t6/model --mteb local:trec6 local:stsb --mteb-results mteb-results
    # the second run prints (and writes to mteb-results/comparison.md) frozen vs trained, task by task

With ``--mteb-results DIR`` the MTEB results are saved through MTEB's own result cache, ``DIR/results/<model>/
<revision>/<Task>.json`` (``mteb.ResultCache(DIR)`` reads them back), tasks already there for the same model and data
are reused, and a table of every model in ``DIR`` is printed and written to ``DIR/comparison.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import SplitSet, train_validation_split
from ..files import atomic_write_json
from .common import CLIError, DataOptions, Log, is_score_pairs, load_data, numeric_labels, positive_pairs
from .models import load_model
from .reports import markdown_table

__all__ = [
    "METRICS",
    "default_metrics",
    "check_metrics",
    "make_evaluator",
    "evaluate_data",
    "run_evaluate",
    "mteb_model_name",
]

#: ``knn``, ``kmeans``: (text, label) data; ``topk``: 0/1 pairs; ``similarity``: pairs with scores (or 0/1 labels)
METRICS = ("knn", "kmeans", "topk", "similarity")


def default_metrics(data: SplitSet) -> list[str]:
    """The metrics ``evaluate`` runs on ``data`` when ``--metrics`` is not given.

    Example::

        from sbert_align.cli.evaluate import default_metrics
        from sbert_align.data import load_splits

        default_metrics(load_splits("trec6"))     # ['knn', 'kmeans']
    """
    if is_score_pairs(data):
        return ["similarity"]
    return ["topk"] if data.is_pairs else ["knn", "kmeans"]


def check_metrics(data: SplitSet, metrics: list[str]) -> None:
    """Raise a one-line :class:`CLIError` when a metric does not fit the kind of ``data``.

    Example::

        from sbert_align.cli.evaluate import check_metrics
        from sbert_align.data import load_splits

        check_metrics(load_splits("trec6"), ["knn"])     # fine; ["topk"] would raise
    """
    for m in metrics:
        if m not in METRICS:
            raise CLIError(f"metrics: {m!r} is not one of {','.join(METRICS)}.")
        if m in ("knn", "kmeans") and (data.is_pairs or data.label_names is None):
            raise CLIError(f"--metrics {m} needs (text, label) data; {data.summary()}.")
        if m == "topk" and not data.is_pairs:
            raise CLIError(f"--metrics topk needs (text1, text2, label) pairs; {data.summary()}.")
        if m == "topk" and is_score_pairs(data):
            raise CLIError(
                f"--metrics topk needs 0/1 pairs (label 1 = duplicate), but {data.name} has similarity scores "
                f"({data.summary()}); use --metrics similarity (Spearman / Pearson correlation)."
            )
        if m == "similarity" and not data.is_pairs:
            raise CLIError(f"--metrics similarity needs (text1, text2, score) pairs; {data.summary()}.")
        if m == "similarity" and numeric_labels(data, "test") is None:
            raise CLIError(f"--metrics similarity needs numeric pair labels; {data.name} has {data.label_names}.")


def make_evaluator(
    data: SplitSet,
    split: str = "test",
    *,
    k: int = 5,
    metric: str | None = None,
    show_progress_bar: bool = False,
    batch_size: int = 32,
) -> Any:
    """The sentence-transformers evaluator for ``split`` of ``data`` (see the module docstring for the choice).

    Args:
        data: the loaded data.
        split: the queries (``test`` or ``validation``); kNN uses ``train`` as references.
        k: neighbours of the kNN.
        metric: ``knn``, ``topk`` or ``similarity`` to force one (``None``: by the kind of data).
        show_progress_bar: progress bars while encoding.
        batch_size: encoding batch size.

    Returns:
        A ``BaseEvaluator``; its metric names start with ``<split>_`` (e.g. ``test_spearman_cosine``), and
        ``primary_metric`` is set after the first call.

    Raises:
        CLIError: no positive pair to evaluate on, or labels that do not fit ``metric``.

    Example::

        from sbert_align.cli import load_model
        from sbert_align.cli.evaluate import make_evaluator
        from sbert_align.data import load_splits

        ev = make_evaluator(load_splits("stsb"), "test")
        ev(load_model("minilm-l6", device="cpu"))["test_spearman_cosine"]
    """
    from ..evaluation import KNNEvaluator, QueryKeyTopKEvaluator

    metric = metric or ("similarity" if is_score_pairs(data) else "topk" if data.is_pairs else "knn")
    check_metrics(data, [metric])
    if metric == "similarity":
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

        pairs = data.pairs(split)
        scores = numeric_labels(data, split)
        if len(pairs) < 2 or scores is None or len(set(scores)) < 2:
            raise CLIError(f"data: the {split} split needs at least two pairs with different scores to correlate.")
        return EmbeddingSimilarityEvaluator(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            scores,
            batch_size=batch_size,
            main_similarity="cosine",
            name=split,
            show_progress_bar=show_progress_bar,
            write_csv=False,
        )
    if metric == "topk":
        pos = positive_pairs(data, split)
        if not pos:
            raise CLIError(f"data: the {split} split has no positive pairs to evaluate.")
        return QueryKeyTopKEvaluator(
            [a for a, _ in pos],
            [b for _, b in pos],
            ks=(1, 5, 10),
            name=split,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            write_csv=False,
            allow_empty_texts=data.allow_empty_texts,
        )
    return KNNEvaluator(
        data.texts("train"),
        data.labels("train"),
        data.texts(split),
        data.labels(split),
        k=k,
        name=split,
        show_progress_bar=show_progress_bar,
        write_csv=False,
        allow_empty_texts=data.allow_empty_texts,
    )


def evaluate_data(
    model: Any,
    data: SplitSet,
    metrics: list[str] | None = None,
    *,
    split: str = "test",
    k: int = 5,
    show_progress_bar: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run each metric set on ``split`` of ``data``; metric set -> the evaluator's metrics.

    Args:
        model: a ``SentenceTransformer``.
        data: the data (a ``validation`` split must exist when ``split="validation"``).
        metrics: subset of :data:`METRICS` (default: :func:`default_metrics`).
        split: the queries.
        k: neighbours of the kNN.
        show_progress_bar: progress bars while encoding.

    Example::

        from sbert_align.cli import load_model
        from sbert_align.cli.evaluate import evaluate_data
        from sbert_align.data import load_splits

        res = evaluate_data(load_model("minilm-l6", device="cpu"), load_splits("trec6"), ["knn"])
        res["knn"]["test_accuracy"]
    """
    from ..evaluation import KMeansEvaluator

    metrics = metrics or default_metrics(data)
    check_metrics(data, metrics)
    results: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if m == "kmeans":
            ev = KMeansEvaluator(
                data.texts(split),
                data.labels(split),
                name=split,
                write_csv=False,
                allow_empty_texts=data.allow_empty_texts,
            )
        else:
            ev = make_evaluator(data, split, k=k, metric=m, show_progress_bar=show_progress_bar)
        results[m] = ev(model)
    return results


def run_evaluate(args: Any, log: Log = print) -> dict[str, Any]:
    """``sbert-align evaluate``: kNN / KMeans / top-k / similarity on a split, and MTEB tasks; prints a table and
    writes JSON (atomically) to ``--out``. MTEB results go to MTEB's result cache in ``--mteb-results``, with a
    comparison of every model there.

    Score pairs (STS-B) are scored by the Spearman / Pearson correlation of cosine similarity against the score;
    0/1 pairs by query-key top-k on their positive pairs; (text, label) data by kNN and KMeans.
    """
    if getattr(args, "mteb_results", None) and not args.mteb:
        raise CLIError("--mteb-results needs --mteb TASK ...")
    mteb_tasks = None
    if args.mteb:  # before anything runs: a bad task name or local data fails at once
        from ..mteb import resolve_tasks

        mteb_tasks = resolve_tasks(args.mteb)
    results: dict[str, Any] = {"model": args.model}
    rows: list[list[Any]] = []
    data = None
    if args.data:  # checked before the model loads: bad data or metrics fail at once
        data = load_data(args.data, DataOptions.from_args(args), max_train=args.max_train_samples)
        if args.split == "validation":
            data = train_validation_split(data, args.validation_fraction, seed=args.seed)
        results["data"] = data.summary()
        metrics = args.metrics or default_metrics(data)
        check_metrics(data, metrics)
    model = load_model(args.model)
    if data is not None:
        for m, res in evaluate_data(
            model, data, metrics, split=args.split, k=args.k, show_progress_bar=not args.quiet
        ).items():
            results[m] = res
            rows += [[data.name, m, key, float(v)] for key, v in res.items() if isinstance(v, (int, float))]
    comparison = None
    if mteb_tasks:
        comparison = _run_mteb(model, mteb_tasks, args, results, log)
        rows += [[r["task"], "mteb", r["metric"], float(r["score"])] for r in results["mteb"]]
    if not rows:
        raise CLIError("nothing to evaluate: give --data and/or --mteb.")
    print(markdown_table(["data / task", "metric set", "metric", "value"], rows))
    if comparison is not None:
        print(f"\nMTEB main scores of every model in {args.mteb_results}:\n\n{comparison}")
    out = atomic_write_json(Path(args.out), results)
    log(f"wrote {out}")
    return results


def mteb_model_name(model: str) -> str:
    """The name ``evaluate --mteb`` files a model argument's MTEB results under (``--mteb-model-name`` overrides it).

    An alias becomes ``local/<alias>``; a local folder ``local/<folder name>``, or ``local/<parent>/model`` for a
    folder named ``model`` (what ``sbert-align train`` writes: ``runs/t6/model`` -> ``local/t6/model``); a hub name
    stays as it is (a bare name gets ``local/``). The revision is always the content hash of the loaded model
    (:func:`~sbert_align.mteb.content_revision`), so two different folders of one name are never mixed up.

    Example::

        from sbert_align.cli.evaluate import mteb_model_name

        mteb_model_name("minilm-l6")                               # 'local/minilm-l6'
        mteb_model_name("sentence-transformers/all-MiniLM-L6-v2")  # unchanged
    """
    from .models import MODEL_ALIASES

    if model in MODEL_ALIASES:
        return f"local/{model}"
    path = Path(model).expanduser()
    if not path.is_dir():
        return model if "/" in model else f"local/{model}"
    from ..mteb import local_model_name

    return local_model_name(path)


def _run_mteb(model: Any, tasks: list, args: Any, results: dict[str, Any], log: Log) -> str | None:
    """The ``--mteb`` part of ``evaluate``: runs the tasks (results saved in ``--mteb-results`` through MTEB's cache);
    returns the Markdown comparison of every model in that folder (``None`` without ``--mteb-results``)."""
    from ..files import atomic_write_text
    from ..mteb import results_table, run_mteb

    folder = getattr(args, "mteb_results", None)
    table = run_mteb(
        model,
        tasks,
        output_folder=folder,
        model_name=getattr(args, "mteb_model_name", None) or mteb_model_name(args.model),
        overwrite=getattr(args, "mteb_overwrite", False),
        show_progress_bar=not args.quiet,
        log=log,
    )
    results["mteb"] = table
    if table:
        results["mteb_model"] = {"name": table[0]["model"], "revision": table[0]["revision"]}
    if not folder:
        return None
    comparison = results_table(folder, tasks)
    markdown = comparison.markdown()
    md_path = atomic_write_text(Path(folder) / "comparison.md", markdown + "\n")
    results["mteb_results"] = str(folder)
    results["mteb_comparison"] = comparison.to_dict()
    log(f"MTEB results: {Path(folder) / 'results'} (mteb.ResultCache({str(folder)!r}) reads them); wrote {md_path}")
    return markdown
