"""Self-supervised pairs from nearby text: two units of one document, a few units apart, are a positive pair.

* :func:`split_sentences`: the one sentence rule (documented there; no model, no download);
* :func:`document_units`: a document as sentences or as chunks of whole sentences;
* :func:`nearby_pairs`: seeded (anchor, positive) pairs of units of the same document at a random separation
  between ``min_gap`` and ``max_gap``, never across documents;
* :func:`split_documents`: a seeded train / held-out split *by document*, so that no document feeds both sides.

Split first, then make pairs on each side: pairs made before the split would put one document on both sides.

Example::

    from sbert_align.data.corpus import read_python_docs
    from sbert_align.data.nearby import nearby_pairs, split_documents

    documents = read_python_docs()                    # apt-get install python3.11-doc
    train_docs, held_docs = split_documents(documents, held_out=0.2, seed=0)
    train = nearby_pairs(train_docs, unit="sentence", max_gap=3, pairs_per_document=50, seed=0)
    train_dataset = train.to_dataset()                # columns: anchor, positive
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .corpus import Document

__all__ = [
    "split_sentences",
    "document_units",
    "nearby_pairs",
    "NearbyPairs",
    "ShortDocumentWarning",
    "split_documents",
    "UNITS",
]

#: The units :func:`nearby_pairs` pairs.
UNITS = ("sentence", "chunk")

#: A document as :func:`nearby_pairs` accepts it: a :class:`Document`, one string (paragraphs separated by blank
#: lines), or a sequence of paragraph strings.
DocumentLike = Document | str | Sequence[str]

#: Words that end in a full stop without ending a sentence (compared lower-case, without the final stop).
ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "viz",
        "resp",
        "approx",
        "ca",
        "al",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "no",
        "nos",
        "fig",
        "figs",
        "eq",
        "sec",
        "ch",
        "vol",
        "pp",
        "inc",
        "ltd",
        "co",
    }
)
_CANDIDATE = re.compile(r"[.!?][\"')\]\u201d\u2019]*(?=\s+[\"'(\[\u201c\u2018]?[A-Z0-9])")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


class ShortDocumentWarning(UserWarning):
    """Some documents have too few units for a pair at the smallest gap and give no pair."""


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences with one simple rule.

    A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes or brackets right after it) that is followed by
    whitespace and then an upper-case letter or a digit (optionally after an opening quote or bracket). A full stop
    does not end a sentence after a known abbreviation (:data:`ABBREVIATIONS`: "e.g.", "i.e.", "etc.", "Dr." ...)
    or after a single upper-case letter (an initial, "J. Smith"). Dots inside words (``os.path.join``, ``3.11``) never
    split, since no whitespace follows them. Whitespace is collapsed; empty pieces are dropped.

    It is a rule, not a model: it misses a boundary before a lower-case start and splits after an abbreviation it does
    not know; for documentation prose that is rare.

    Example:
        ::

            from sbert_align.data.nearby import split_sentences

            split_sentences("Use os.path.join(), e.g. for paths. It is in Python 3.11. Really? Yes.")
            # ['Use os.path.join(), e.g. for paths.', 'It is in Python 3.11.', 'Really?', 'Yes.']
    """
    if not isinstance(text, str):
        raise ValueError(f"split_sentences expects a string, got {type(text).__name__}.")
    text = " ".join(text.split())
    sentences, start = [], 0
    for match in _CANDIDATE.finditer(text):
        if text[match.start()] == ".":
            words = text[start : match.start()].split()
            last = words[-1].lstrip("\"'([\u201c\u2018") if words else ""
            if last.lower() in ABBREVIATIONS or (len(last) == 1 and last.isalpha() and last.isupper()):
                continue
        piece = text[start : match.end()].strip()
        if piece:
            sentences.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _paragraphs(document: DocumentLike, index: int) -> tuple[str, list[str]]:
    """``(id, paragraphs)`` of a document given in any accepted form."""
    if isinstance(document, Document):
        return document.id, list(document.paragraphs)
    if isinstance(document, str):
        return str(index), [p for p in _PARAGRAPH_BREAK.split(document) if p.strip()]
    if isinstance(document, Sequence) and all(isinstance(p, str) for p in document):
        return str(index), list(document)
    raise ValueError(
        f"documents[{index}]: expected a Document, a string or a list of paragraph strings, got "
        f"{type(document).__name__}."
    )


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _units(paragraphs: Sequence[str], unit: str, chunk_size: int, min_words: int) -> list[str]:
    sentences = [s for p in paragraphs for s in split_sentences(p)]
    if unit == "sentence":
        return [s for s in sentences if len(s.split()) >= min_words]
    chunks: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in sentences:
        n = len(sentence.split())
        if current and words + n > chunk_size:
            chunks.append(" ".join(current))
            current, words = [], 0
        current.append(sentence)
        words += n
    if current:
        chunks.append(" ".join(current))
    return [c for c in chunks if len(c.split()) >= min_words]


def document_units(
    document: DocumentLike, unit: str = "sentence", *, chunk_size: int = 64, min_words: int = 1
) -> list[str]:
    """A document as a list of units, in reading order (across paragraphs).

    Args:
        document: A :class:`~sbert_align.data.corpus.Document`, a string (paragraphs separated by blank lines) or a
            list of paragraph strings. The title is not a unit.
        unit: ``"sentence"``: the sentences of :func:`split_sentences`. ``"chunk"``: whole sentences packed greedily,
            in order, into chunks of at most ``chunk_size`` words (whitespace-separated); a longer sentence is a
            chunk of its own. Chunks run across paragraph breaks.
        chunk_size: Words per chunk (``unit="chunk"`` only).
        min_words: Units with fewer words are dropped (after chunking), so gaps count only the units kept.

    Example:
        ::

            from sbert_align.data.nearby import document_units

            document_units(["One two three. Four five.", "Six seven eight nine."], "chunk", chunk_size=5)
            # ['One two three. Four five.', 'Six seven eight nine.']
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}.")
    _check_int(chunk_size, "chunk_size", 1)
    _check_int(min_words, "min_words", 1)
    return _units(_paragraphs(document, 0)[1], unit, chunk_size, min_words)


@dataclass
class NearbyPairs:
    """The pairs :func:`nearby_pairs` made, with where each came from.

    Args:
        anchor: The earlier unit of each pair.
        positive: The later unit, ``gap`` units after the anchor in the same document.
        document: Index of each pair's document in the ``documents`` given.
        document_id: Id of each pair's document (``Document.id``, else the index as a string).
        gap: The separation in units (1 = adjacent).
        num_documents: How many documents were given.
        skipped_documents: Ids of the documents too short for a pair (fewer than ``min_gap + 1`` units).
        settings: The arguments that made the pairs.

    Example:
        ::

            from sbert_align.data.nearby import nearby_pairs

            pairs = nearby_pairs(["One sentence here. Another one here. A third one here."], max_gap=2, seed=0)
            train_dataset = pairs.to_dataset()      # columns: anchor, positive
            print(pairs.summary(), pairs.gap)
    """

    anchor: list[str]
    positive: list[str]
    document: list[int]
    document_id: list[str]
    gap: list[int]
    num_documents: int
    skipped_documents: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.anchor)

    def columns(self) -> dict[str, list[str]]:
        """``{"anchor": [...], "positive": [...]}``: the two text columns a pair loss trains on."""
        return {"anchor": list(self.anchor), "positive": list(self.positive)}

    def to_dataset(self):
        """A ``datasets.Dataset`` with the columns ``anchor`` and ``positive`` only (every other column of a
        sentence-transformers training set would be read as a text or a label)."""
        from datasets import Dataset

        return Dataset.from_dict(self.columns())

    def subsample(self, n: int, seed: int = 0) -> NearbyPairs:
        """``n`` pairs drawn without replacement (seeded), in their original order; all of them when ``n >= len``."""
        _check_int(n, "n", 1)
        keep = sorted(random.Random(seed).sample(range(len(self)), n)) if n < len(self) else list(range(len(self)))
        return NearbyPairs(
            [self.anchor[i] for i in keep],
            [self.positive[i] for i in keep],
            [self.document[i] for i in keep],
            [self.document_id[i] for i in keep],
            [self.gap[i] for i in keep],
            self.num_documents,
            list(self.skipped_documents),
            {**self.settings, "subsample": {"n": n, "seed": seed}},
        )

    def summary(self) -> str:
        used = len(set(self.document))
        return (
            f"{len(self)} pairs from {used} of {self.num_documents} documents "
            f"({len(self.skipped_documents)} too short), gaps {min(self.gap, default=0)}-{max(self.gap, default=0)}"
        )


def _sample_document(n: int, gaps: range, budget: int | None, rng: random.Random) -> list[tuple[int, int]]:
    """``(start, gap)`` pairs of one document of ``n`` units: all of them when ``budget`` is None or covers them, else
    ``budget`` without replacement, each draw a gap uniform among the gaps with pairs left, then a start uniform
    among that gap's unused starts."""
    total = sum(n - g for g in gaps)
    if budget is None or budget >= total:
        return [(i, g) for g in gaps for i in range(n - g)]
    remaining: dict[int, list[int]] = {}
    open_gaps = list(gaps)
    chosen = []
    while len(chosen) < budget:
        g = open_gaps[rng.randrange(len(open_gaps))]
        starts = remaining.setdefault(g, list(range(n - g)))
        j = rng.randrange(len(starts))
        starts[j], starts[-1] = starts[-1], starts[j]
        chosen.append((starts.pop(), g))
        if not starts:
            open_gaps.remove(g)
    return chosen


def nearby_pairs(
    documents: Sequence[DocumentLike],
    unit: str = "sentence",
    *,
    chunk_size: int = 64,
    min_gap: int = 1,
    max_gap: int = 3,
    pairs_per_document: int | None = 10,
    min_words: int = 1,
    seed: int = 0,
) -> NearbyPairs:
    """Self-supervised (anchor, positive) pairs: two units of the same document, ``min_gap`` to ``max_gap`` apart.

    Each document is cut into units (:func:`document_units`: sentences, or chunks of whole sentences). Its candidate
    pairs are ``(unit i, unit i + g)`` for every gap ``g`` in ``[min_gap, max_gap]`` that fits. Of those,
    ``pairs_per_document`` are drawn without replacement: a gap uniformly among the gaps with candidates left, then an
    anchor position uniformly; a document with fewer candidates gives all of them. Pairs never cross documents. A pair
    whose two units have the same text is dropped (it teaches nothing). The anchor is always the earlier unit; pairs
    come out grouped by document, in the documents' order, each document's pairs ordered by position.

    Randomness: document ``k`` draws from its own generator, seeded with ``(seed, k)``, so the same documents, settings
    and seed give the same pairs, and a document's pairs do not depend on the other documents.

    Args:
        documents: :class:`~sbert_align.data.corpus.Document` objects, strings (paragraphs separated by blank lines)
            or lists of paragraph strings. Split them into train and held-out sets *before* making pairs
            (:func:`split_documents`).
        unit: ``"sentence"`` or ``"chunk"``.
        chunk_size: Words per chunk (``unit="chunk"``).
        min_gap: Smallest separation in units (1 = adjacent units).
        max_gap: Largest separation in units.
        pairs_per_document: Pairs drawn per document; None takes every candidate pair.
        min_words: Units with fewer words are dropped before pairing (gaps count only the units kept).
        seed: The seed.

    Returns:
        A :class:`NearbyPairs` (``.to_dataset()`` gives the ``anchor`` / ``positive`` training set).

    Raises:
        ValueError: no documents, a document of the wrong type, an unknown ``unit``, ``min_gap < 1``,
            ``min_gap > max_gap``, a bad count, or no document long enough for a single pair (naming how many were
            too short).

    Warns:
        ShortDocumentWarning: some documents are too short (fewer than ``min_gap + 1`` units) and give no pair; the
            message says how many, and ``NearbyPairs.skipped_documents`` names them.

    Example:
        ::

            from sbert_align.data.nearby import nearby_pairs

            docs = [
                "Rivers flow to the sea. Most rivers are fresh water. Some dry up in summer.",
                "The tutorial starts with numbers. Then it covers strings. Lists come last.",
            ]
            pairs = nearby_pairs(docs, max_gap=2, pairs_per_document=2, seed=3)
            print(pairs.summary())
            for a, p in zip(pairs.anchor, pairs.positive):
                print(a, "->", p)
    """
    if isinstance(documents, (str, Document)) or not isinstance(documents, Sequence):
        raise ValueError(
            f"documents must be a list of documents, got {type(documents).__name__}; wrap a single one in a list."
        )
    if len(documents) == 0:
        raise ValueError("documents is empty: give at least one document.")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}.")
    _check_int(chunk_size, "chunk_size", 1)
    _check_int(min_gap, "min_gap", 1)
    _check_int(max_gap, "max_gap", 1)
    if min_gap > max_gap:
        raise ValueError(f"min_gap ({min_gap}) must not be larger than max_gap ({max_gap}).")
    if pairs_per_document is not None:
        _check_int(pairs_per_document, "pairs_per_document", 1)
    _check_int(min_words, "min_words", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")

    out = NearbyPairs([], [], [], [], [], len(documents))
    out.settings = {
        "unit": unit,
        "chunk_size": chunk_size if unit == "chunk" else None,
        "min_gap": min_gap,
        "max_gap": max_gap,
        "pairs_per_document": pairs_per_document,
        "min_words": min_words,
        "seed": seed,
    }
    identical = 0
    for k, document in enumerate(documents):
        doc_id, paragraphs = _paragraphs(document, k)
        units = _units(paragraphs, unit, chunk_size, min_words)
        gaps = range(min_gap, min(max_gap, len(units) - 1) + 1)
        if len(gaps) == 0:
            out.skipped_documents.append(doc_id)
            continue
        rng = random.Random(f"nearby_pairs/{seed}/{k}")
        for start, gap in sorted(_sample_document(len(units), gaps, pairs_per_document, rng)):
            a, p = units[start], units[start + gap]
            if a == p:
                identical += 1
                continue
            out.anchor.append(a)
            out.positive.append(p)
            out.document.append(k)
            out.document_id.append(doc_id)
            out.gap.append(gap)
    out.settings["identical_pairs_dropped"] = identical
    skipped = len(out.skipped_documents)
    need = f"fewer than {min_gap + 1} {unit}s" + (f" of at least {min_words} words" if min_words > 1 else "")
    if skipped == len(documents) or len(out) == 0:
        raise ValueError(
            f"nearby_pairs: no pair could be made: {skipped} of {len(documents)} documents have {need} (min_gap="
            f"{min_gap}), and the rest gave only pairs of identical units. Give longer documents, a smaller min_gap"
            + (", a smaller chunk_size" if unit == "chunk" else "")
            + (" or a smaller min_words." if min_words > 1 else ".")
        )
    if skipped:
        shown = ", ".join(repr(d) for d in out.skipped_documents[:5]) + (", ..." if skipped > 5 else "")
        warnings.warn(
            f"nearby_pairs: skipped {skipped} of {len(documents)} documents with {need} (min_gap={min_gap}): "
            f"{shown}. NearbyPairs.skipped_documents lists them.",
            ShortDocumentWarning,
            stacklevel=2,
        )
    return out


def split_documents(
    documents: Sequence[DocumentLike], held_out: float | int = 0.1, seed: int = 0
) -> tuple[list[DocumentLike], list[DocumentLike]]:
    """Split documents into train and held-out *by document*, seeded, each side in the original order.

    Make nearby pairs on each side afterwards: then no document feeds both training and evaluation. (Documents that
    share sentences, such as boilerplate, can still share texts across the split; the split is by document.)

    Args:
        documents: The documents (any form :func:`nearby_pairs` accepts).
        held_out: The share held out, in ``(0, 1)``, or a number of documents, from 1 to ``len(documents) - 1``.
        seed: The seed; the same seed gives the same split.

    Returns:
        ``(train, held_out)`` lists of the documents themselves.

    Raises:
        ValueError: fewer than 2 documents, or ``held_out`` outside its range.

    Example:
        ::

            from sbert_align.data.nearby import split_documents

            train, held = split_documents([f"Document {i}. It has two sentences." for i in range(10)], held_out=0.2)
            assert len(train) == 8 and len(held) == 2 and not set(train) & set(held)
    """
    from .carving import carve_indices

    if isinstance(documents, (str, Document)) or not isinstance(documents, Sequence):
        raise ValueError(f"documents must be a list of documents, got {type(documents).__name__}.")
    n = len(documents)
    if n < 2:
        raise ValueError(f"split_documents needs at least 2 documents to split, got {n}.")
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)):
        raise ValueError(f"held_out must be a share in (0, 1) or a count of documents, got {held_out!r}.")
    if isinstance(held_out, int):
        if not 1 <= held_out <= n - 1:
            raise ValueError(f"held_out: a count must be between 1 and {n - 1} (of {n} documents), got {held_out}.")
        fraction = held_out / n
    else:
        if not 0 < held_out < 1:
            raise ValueError(f"held_out: a share must be in (0, 1), got {held_out!r}.")
        fraction = held_out
    kept, held = carve_indices(n, fraction, seed, what="held-out")
    return [documents[i] for i in kept], [documents[i] for i in held]
