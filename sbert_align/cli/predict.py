"""``sbert-align predict``: classify texts with the kNN classifier saved in a model folder; writes CSV
``text,label,score``.

The classifier is the :class:`~sbert_align.classifier.KNNClassifier` that ``sbert-align train`` saves with the model
(``model/knn_classifier/``), or one fitted on the spot on the train split of ``--train-data``. The score is the cosine
similarity of the text's nearest reference; with a threshold (saved, or ``--threshold``) texts scoring below it get
``--unknown-label`` instead of a class.

Input (``--input``): ``-`` (standard input) or a ``.txt`` file, one text per line (blank lines skipped); or a
``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` table, whose text column is ``--text-column``, else ``text``, else
``sentence``, else its only column. Output: CSV to standard output, or to ``--output`` (written atomically; an
existing file needs ``--overwrite``).

Example::

    sbert-align train --model minilm-l6 --data clinc150 --loss class-alignment --out runs/c150
    echo "what's my balance" | sbert-align predict --model runs/c150/model --input -
    sbert-align predict --model runs/c150/model --input questions.csv --output predicted.csv --threshold 0.5
    sbert-align predict --model minilm-l6 --train-data trec6 --input questions.txt      # a frozen encoder
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from ..data import find_empty_texts, read_rows
from ..files import atomic_open
from .common import CLIError, DataOptions, Log, load_data
from .models import load_model, resolve_model

__all__ = ["INPUT_SUFFIXES", "read_input_texts", "write_predictions", "run_predict"]

#: ``--input`` types: text lines, or a table with a text column
INPUT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".json")
#: text columns tried, in order, when ``--text-column`` is not given
TEXT_COLUMNS = ("text", "sentence")
#: the CSV header of the output
OUTPUT_COLUMNS = ("text", "label", "score")


def read_input_texts(source: str, text_column: str | None = None, allow_empty_texts: bool = False) -> list[str]:
    """The texts of ``--input``: ``-`` (stdin) or a ``.txt`` file, one per line; or a table's text column.

    Args:
        source: ``-``, or a file path (``.txt``, ``.csv``, ``.tsv``, ``.jsonl``, ``.json``; no suffix: text lines).
        text_column: the table's text column (``None``: ``text``, else ``sentence``, else the only column).
        allow_empty_texts: keep empty table cells instead of refusing them (blank lines are always skipped).

    Returns:
        The texts, in input order.

    Raises:
        CLIError: no such file, an unsupported type, ``text_column`` for text lines, a missing text column, a value
            that is not a string, empty texts (with their location), or no text at all.

    Example::

        from sbert_align.cli.predict import read_input_texts

        read_input_texts("questions.csv", text_column="question")
    """
    if source == "-":
        if text_column is not None:
            raise CLIError("--text-column applies to a table file; standard input is read as one text per line.")
        texts = _lines(sys.stdin.read())
        where = "standard input"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise CLIError(f"--input: no such file {source!r}.")
        suffix = path.suffix.lower()
        if suffix not in ("", ".txt") and suffix not in INPUT_SUFFIXES:
            raise CLIError(
                f"--input: unsupported file type {suffix!r}; expected - (standard input), .txt (one text per line), "
                ".csv, .tsv, .jsonl or .json."
            )
        if suffix in ("", ".txt"):
            if text_column is not None:
                raise CLIError(f"--text-column applies to a table file; {path.name} is read as one text per line.")
            try:
                texts = _lines(path.read_text(encoding="utf-8-sig"))
            except UnicodeDecodeError as e:
                raise CLIError(f"--input: {path} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
        else:
            texts = _table_texts(path, text_column, allow_empty_texts)
        where = str(path)
    if not texts:
        raise CLIError(f"--input: {where} holds no text.")
    return texts


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _table_texts(path: Path, text_column: str | None, allow_empty_texts: bool) -> list[str]:
    rows = read_rows(path)
    columns = list(rows.columns)
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in columns), columns[0] if len(columns) == 1 else None)
        if text_column is None:
            raise CLIError(
                f"--input: {path} has no 'text' or 'sentence' column (columns: {', '.join(columns)}); pass "
                "--text-column NAME."
            )
    lacking = [i for i, row in enumerate(rows.rows) if text_column not in row]
    if lacking or text_column not in columns:
        at = f"; {rows.where(lacking[0])} lacks it" if lacking else ""
        raise CLIError(f"--input: {path} has no column {text_column!r}{at} (columns: {', '.join(columns)}).")
    texts = [row[text_column] for row in rows.rows]
    bad = next((i for i, t in enumerate(texts) if t is not None and not isinstance(t, str)), None)
    if bad is not None:
        raise CLIError(
            f"--input: {rows.where(bad)}: the text is {type(texts[bad]).__name__} {texts[bad]!r}, not a string."
        )
    empty = find_empty_texts(texts)
    if empty and not allow_empty_texts:
        raise CLIError(
            f"--input: {len(empty)} empty text{'s' if len(empty) != 1 else ''} in {path} (the first at "
            f"{rows.where(empty[0])}); remove them, or pass --allow-empty-texts to classify them anyway."
        )
    return ["" if t is None else t for t in texts]


def write_predictions(texts: list[str], labels: Any, scores: Any, output: str | None, overwrite: bool = False) -> None:
    """Write ``text,label,score`` rows as CSV to ``output`` (atomically) or, when ``None``, to standard output.

    Scores are written with 6 decimals.

    Raises:
        CLIError: ``output`` exists and ``overwrite`` is False, or is a folder.

    Example::

        from sbert_align.cli.predict import write_predictions

        write_predictions(["hi"], ["greeting"], [0.93], None)     # text,label,score / hi,greeting,0.930000
    """
    rows = [(t, str(label), f"{float(s):.6f}") for t, label, s in zip(texts, labels, scores)]
    if output is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(OUTPUT_COLUMNS)
        writer.writerows(rows)
        sys.stdout.flush()
        return
    path = Path(output).expanduser()
    if path.is_dir():
        raise CLIError(f"--output {output!r} is a folder; expected a file name.")
    if path.exists() and not overwrite:
        raise CLIError(f"--output {output!r} exists; pass --overwrite to replace it, or choose another file.")
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(OUTPUT_COLUMNS)
        writer.writerows(rows)


def _classifier(args: Any, log: Log) -> Any:
    """The classifier to predict with: fitted on ``--train-data``, or the one saved in the model folder."""
    from ..classifier import CLASSIFIER_FOLDER, KNNClassifier

    overrides = {
        key: getattr(args, key)
        for key in ("k", "weights", "unknown_label", "batch_size")
        if getattr(args, key, None) is not None
    }
    threshold = getattr(args, "threshold", None)
    if threshold is not None:
        overrides["threshold"] = None if threshold == "none" else threshold
    if getattr(args, "train_data", None):
        options = DataOptions(
            text_columns=(args.train_text_column,) if getattr(args, "train_text_column", None) else None,
            label_column=getattr(args, "train_label_column", None),
        )
        data = load_data(args.train_data, options)
        if data.is_pairs or data.label_names is None:
            raise CLIError(f"--train-data needs (text, label) data; {data.summary()}.")
        model = load_model(args.model)
        log(f"fitting the classifier on the train split of {data.summary()}")
        clf = KNNClassifier(model, show_progress_bar=not args.quiet, **overrides)
        return clf.fit(data.texts("train"), data.label_strings("train"))
    folder = Path(resolve_model(args.model))
    if not (folder / CLASSIFIER_FOLDER).is_dir():
        raise CLIError(
            f"--model {args.model!r} has no kNN classifier (no {CLASSIFIER_FOLDER}/ folder): pass --train-data DATA to "
            "fit one on labelled texts now, or train with 'sbert-align train', which saves one with the model."
        )
    model = load_model(args.model)
    clf = KNNClassifier.load(folder, model=model, show_progress_bar=not args.quiet, **overrides)
    log(f"loaded {clf!r} from {folder / CLASSIFIER_FOLDER}")
    return clf


def run_predict(args: Any, log: Log = print) -> list[tuple[str, Any, float]]:
    """``sbert-align predict``: classify the texts of ``--input`` with the kNN classifier saved in ``--model`` (or
    fitted on ``--train-data``); writes CSV ``text,label,score`` to standard output or ``--output``. The score is the
    cosine similarity of the nearest reference; below the threshold the label is ``--unknown-label``."""
    texts = read_input_texts(args.input, args.text_column, args.allow_empty_texts)
    output = getattr(args, "output", None)
    if output is not None and Path(output).expanduser().exists() and not getattr(args, "overwrite", False):
        raise CLIError(f"--output {output!r} exists; pass --overwrite to replace it, or choose another file.")
    clf = _classifier(args, log)
    clf.allow_empty_texts = bool(args.allow_empty_texts)
    labels, scores = clf.predict_with_scores(texts)
    write_predictions(texts, labels, scores, output, overwrite=getattr(args, "overwrite", False))
    if clf.threshold is not None:
        unknown = sum(1 for label in labels if label == clf.unknown_label)
        log(f"{unknown} of {len(texts)} texts below the threshold {clf.threshold:.4f}: {clf.unknown_label!r}")
    log(f"predicted {len(texts)} texts" + (f"; wrote {output}" if output else ""))
    return list(zip(texts, labels.tolist(), scores.tolist()))
