"""Nearby-text pairs (sbert_align.data.nearby) and the Python-docs reader (sbert_align.data.corpus)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from sbert_align.data.corpus import (
    Document,
    html_to_document,
    load_documents,
    python_docs_dir,
    read_python_docs,
    save_documents,
)
from sbert_align.data.nearby import (
    NearbyPairs,
    ShortDocumentWarning,
    document_units,
    nearby_pairs,
    split_documents,
    split_sentences,
)

SAMPLE = Path(__file__).parent / "data" / "python_docs_sample"


def tagged_documents(lengths: list[int]) -> list[Document]:
    """Document k has sentences "Doc k sentence i." (i = 0..n-1): every unit names its document and position."""
    return [
        Document(f"d{k}", f"Title {k}", tuple(f"Doc {k} sentence {i}." for i in range(n)))
        for k, n in enumerate(lengths)
    ]


def position(text: str) -> tuple[int, int]:
    words = text.rstrip(".").split()
    return int(words[1]), int(words[3])


# ---------------------------------------------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Use os.path.join(), e.g. for paths. It is in Python 3.11. Really? Yes!",
            ["Use os.path.join(), e.g. for paths.", "It is in Python 3.11.", "Really?", "Yes!"],
        ),
        ("J. Smith wrote it (see Fig. 3). Then he left.", ["J. Smith wrote it (see Fig. 3).", "Then he left."]),
        ('He said "Stop." Then he went.', ['He said "Stop."', "Then he went."]),
        (
            "Lists are mutable (unlike tuples.) 42 is a number.",
            ["Lists are mutable (unlike tuples.)", "42 is a number."],
        ),
        ("no split before lower case. like this", ["no split before lower case. like this"]),
        ("  Spaces\n and\tnewlines   collapse.  ", ["Spaces and newlines collapse."]),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_chunks_pack_whole_sentences():
    paragraphs = ["One two three. Four five.", "Six seven eight nine. Ten."]
    assert document_units(paragraphs, "chunk", chunk_size=5) == [
        "One two three. Four five.",
        "Six seven eight nine. Ten.",
    ]
    assert document_units(paragraphs, "chunk", chunk_size=4) == [
        "One two three.",
        "Four five.",
        "Six seven eight nine.",
        "Ten.",
    ]
    # a sentence longer than the chunk is a chunk of its own; min_words drops short units after chunking
    assert document_units(["A b c d e f g. H."], "chunk", chunk_size=3) == ["A b c d e f g.", "H."]
    assert document_units(["A b c d e f g. H."], "chunk", chunk_size=3, min_words=2) == ["A b c d e f g."]
    assert document_units("First para. Still first.\n\nSecond para.") == [
        "First para.",
        "Still first.",
        "Second para.",
    ]


# ---------------------------------------------------------------------------------------------------- pairs


def test_pairs_are_within_one_document_at_an_allowed_gap():
    docs = tagged_documents([12, 3, 30, 7])
    pairs = nearby_pairs(docs, min_gap=2, max_gap=4, pairs_per_document=5, seed=1)
    assert isinstance(pairs, NearbyPairs) and len(pairs) == 5 + 1 + 5 + 5  # doc 1 (3 units) has one pair: (0, 2)
    for a, p, k, doc_id, gap in zip(pairs.anchor, pairs.positive, pairs.document, pairs.document_id, pairs.gap):
        (ka, ia), (kp, ip) = position(a), position(p)
        assert ka == kp == k and doc_id == f"d{k}"  # never across documents
        assert ip - ia == gap and 2 <= gap <= 4
    assert Counter(pairs.document) == {0: 5, 1: 1, 2: 5, 3: 5}
    assert pairs.to_dataset().column_names == ["anchor", "positive"]


def test_all_candidates_when_no_budget():
    lengths = [9, 4, 2]
    docs = tagged_documents(lengths)
    pairs = nearby_pairs(docs, min_gap=1, max_gap=3, pairs_per_document=None)
    brute = {
        (k, i, j) for k, n in enumerate(lengths) for i, j in itertools.combinations(range(n), 2) if 1 <= j - i <= 3
    }
    got = {(position(a)[0], position(a)[1], position(p)[1]) for a, p in zip(pairs.anchor, pairs.positive)}
    assert got == brute and len(pairs) == len(brute)
    # a budget larger than the candidates also gives all of them
    assert len(nearby_pairs(docs, max_gap=3, pairs_per_document=1000)) == len(brute)


def test_sampling_is_without_replacement_and_gaps_are_uniform():
    docs = tagged_documents([60] * 200)
    pairs = nearby_pairs(docs, min_gap=1, max_gap=5, pairs_per_document=6, seed=0)
    keys = [(k, position(a)[1], g) for k, a, g in zip(pairs.document, pairs.anchor, pairs.gap)]
    assert len(set(keys)) == len(keys) == 1200
    counts = Counter(pairs.gap)
    assert set(counts) == {1, 2, 3, 4, 5}
    # uniform over 5 gaps: 240 expected each; chi-square with 4 d.o.f. stays below 18.5 with probability 0.999
    chi2 = sum((c - 240) ** 2 / 240 for c in counts.values())
    assert chi2 < 18.5, counts


def test_deterministic_and_independent_of_other_documents():
    docs = tagged_documents([20, 25, 30])
    a = nearby_pairs(docs, max_gap=3, pairs_per_document=4, seed=7)
    b = nearby_pairs(docs, max_gap=3, pairs_per_document=4, seed=7)
    c = nearby_pairs(docs, max_gap=3, pairs_per_document=4, seed=8)
    assert (a.anchor, a.positive) == (b.anchor, b.positive)
    assert (a.anchor, a.positive) != (c.anchor, c.positive)
    # document 0 alone gives the same pairs as document 0 among others (same position, same seed)
    alone = nearby_pairs(docs[:1], max_gap=3, pairs_per_document=4, seed=7)
    first = [(x, y) for x, y, k in zip(a.anchor, a.positive, a.document) if k == 0]
    assert first == list(zip(alone.anchor, alone.positive))


def test_identical_units_are_not_paired_and_min_words_filters_units():
    doc = ["For example.", "Something long enough here.", "For example.", "Another long sentence here."]
    pairs = nearby_pairs([doc], max_gap=2, pairs_per_document=None)
    assert len(pairs) == 4 and all(a != p for a, p in zip(pairs.anchor, pairs.positive))
    assert pairs.settings["identical_pairs_dropped"] == 1  # units 0 and 2
    filtered = nearby_pairs([doc], max_gap=2, pairs_per_document=None, min_words=3)
    assert list(zip(filtered.anchor, filtered.positive)) == [(doc[1], doc[3])]


def test_short_documents_are_counted_in_the_warning_and_the_error():
    docs = tagged_documents([1, 5, 2, 1])
    with pytest.warns(ShortDocumentWarning, match="skipped 2 of 4 documents"):
        pairs = nearby_pairs(docs, max_gap=2)
    assert pairs.skipped_documents == ["d0", "d3"]
    with pytest.warns(ShortDocumentWarning, match="skipped 3 of 4 documents with fewer than 4 sentences"):
        nearby_pairs(docs, min_gap=3, max_gap=3)
    with pytest.raises(ValueError, match="4 of 4 documents have fewer than 6 sentences"):
        nearby_pairs(docs, min_gap=5, max_gap=6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_gap": 3, "max_gap": 2}, "min_gap \\(3\\) must not be larger than max_gap \\(2\\)"),
        ({"min_gap": 0}, "min_gap must be an integer >= 1"),
        ({"unit": "word"}, "unit must be one of"),
        ({"pairs_per_document": 0}, "pairs_per_document must be an integer >= 1"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nearby_pairs(tagged_documents([10]), **kwargs)


def test_bad_documents():
    with pytest.raises(ValueError, match="documents is empty"):
        nearby_pairs([])
    with pytest.raises(ValueError, match="wrap a single one in a list"):
        nearby_pairs("One sentence. Two sentences.")
    with pytest.raises(ValueError, match=r"documents\[1\]: expected a Document"):
        nearby_pairs(["One. Two.", 3])


def test_subsample_is_seeded_and_keeps_order():
    pairs = nearby_pairs(tagged_documents([40] * 5), max_gap=3, pairs_per_document=10)
    sub = pairs.subsample(12, seed=3)
    assert len(sub) == 12 and sub.anchor == pairs.subsample(12, seed=3).anchor
    index = {(a, p): i for i, (a, p) in enumerate(zip(pairs.anchor, pairs.positive))}
    rows = [index[(a, p)] for a, p in zip(sub.anchor, sub.positive)]
    assert rows == sorted(rows)
    assert len(pairs.subsample(10_000)) == len(pairs)


# ---------------------------------------------------------------------------------------------------- split


def test_split_documents_by_document():
    docs = tagged_documents([5] * 50)
    train, held = split_documents(docs, held_out=0.2, seed=0)
    assert len(held) == 10 and len(train) == 40
    assert {d.id for d in train}.isdisjoint({d.id for d in held})
    assert sorted(d.id for d in train + held) == sorted(d.id for d in docs)
    assert [d.id for d in train] == [d.id for d in docs if d in train]  # order kept
    assert split_documents(docs, held_out=0.2, seed=0) == (train, held)
    assert split_documents(docs, held_out=0.2, seed=1)[1] != held
    assert len(split_documents(docs, held_out=7, seed=0)[1]) == 7
    # pairs made after the split never share a document across it
    train_pairs = nearby_pairs(train, max_gap=2)
    held_pairs = nearby_pairs(held, max_gap=2)
    assert {position(a)[0] for a in train_pairs.anchor}.isdisjoint({position(a)[0] for a in held_pairs.anchor})


@pytest.mark.parametrize("held_out", [0, 1.0, 0.0, -3, 50, True, "0.1"])
def test_split_documents_bad_held_out(held_out):
    with pytest.raises(ValueError, match="held_out"):
        split_documents(tagged_documents([3] * 50), held_out=held_out)


def test_split_documents_needs_two():
    with pytest.raises(ValueError, match="at least 2 documents"):
        split_documents(tagged_documents([3]))


# ---------------------------------------------------------------------------------------------------- corpus reader


def test_html_to_document_keeps_prose_only():
    page = (
        '<html><head><title>T</title></head><body><div class="sphinxsidebar"><p>Navigation text</p></div>'
        '<div class="body" role="main"><section><h1>The <code>bisect</code> module'
        '<a class="headerlink" href="#x">\u00b6</a></h1>'
        "<p><strong>Source code:</strong> <a href='x'>Lib/bisect.py</a></p>"
        "<p>Keeps a list <em>sorted</em>\n   without   sorting.<br/>Really.</p>"
        '<div class="admonition note"><p class="admonition-title">Note</p><p>Inside a note.</p></div>'
        "<dl><dt>bisect.insort(<em>a</em>, <em>x</em>)</dt><dd><p>Insert <code>x</code> in <em>a</em>.</p></dd></dl>"
        '<div class="highlight"><pre>&gt;&gt;&gt; insort(a, 1)</pre></div>'
        "<table><tr><td><p>cell</p></td></tr></table>"
        '<div class="versionadded"><p><span class="versionmodified added">New in version 3.10.</span></p></div>'
        '<p class="availability">Availability: Unix.</p>'
        "<p>Fish &amp; chips<a class='footnote-reference brackets' href='#f1'>1</a> are good.</p>"
        "</section></div><p>Footer text</p></body></html>"
    )
    doc = html_to_document(page, "library/bisect")
    assert doc.id == "library/bisect" and doc.title == "The bisect module"
    assert doc.paragraphs == (
        "Keeps a list sorted without sorting. Really.",
        "Inside a note.",
        "Insert x in a.",
        "Fish & chips are good.",
    )
    assert html_to_document(page, "x", main_only=False).paragraphs[0] == "Navigation text"


def test_read_bundled_python_docs_sample():
    docs = read_python_docs(SAMPLE)
    ids = [d.id for d in docs]
    assert ids == [
        "library/bisect",
        "library/colorsys",
        "library/keyword",
        "library/textwrap",
        "tutorial/appetite",
        "tutorial/interactive",
        "tutorial/whatnow",
    ]  # search.html is left out (PYTHON_DOCS_EXCLUDE)
    colorsys = docs[1]
    assert colorsys.title == "colorsys \u2014 Conversions between color systems"
    assert colorsys.paragraphs[0].startswith("The colorsys module defines bidirectional conversions of color values")
    assert "Convert the color from RGB coordinates to YIQ coordinates." in colorsys.paragraphs
    text = "\n".join(p for d in docs for p in d.paragraphs)
    for junk in ("\u00b6", ">>>", "Navigation", "Previous topic", "Source code:", "rgb_to_yiq(", "Permalink"):
        assert junk not in text, junk
    assert [d.id for d in read_python_docs(SAMPLE, sections=("tutorial",))] == ids[4:]
    # the reader's output feeds nearby_pairs; keyword has 7 sentences
    pairs = nearby_pairs(docs, max_gap=3, pairs_per_document=5, min_words=4, seed=0)
    assert len(pairs) == 35 and set(pairs.document_id) == set(ids)


def test_documents_round_trip_and_bad_lines(tmp_path):
    docs = read_python_docs(SAMPLE, sections=("library",))
    path = save_documents(docs, tmp_path / "docs.jsonl")
    assert load_documents(path) == docs
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "paragraphs": ["x"]}) + "\n" + json.dumps({"title": "no id"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl, line 2"):
        load_documents(bad)


def test_missing_docs_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install python9.99-doc"):
        python_docs_dir("9.99")
    with pytest.raises(FileNotFoundError, match="apt-get install python3-doc"):
        read_python_docs(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no page"):
        read_python_docs(tmp_path)


# ---------------------------------------------------------------------------------------------------- the benchmark


def test_bench_nearby_data_table_and_arguments():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_nearby as bn

    docs = read_python_docs(SAMPLE)
    train, held, info = bn.build_data(docs, pairs_per_document=5, seed=0, max_pairs=None, eval_pairs=5)
    assert set(train.document_id).isdisjoint(held.document_id)  # split by page
    assert info["documents"] == 7 and info["train_documents"] + info["held_out_documents"] == 7
    assert len(held) == info["eval_pairs"] == 5 and info["train_pairs"] == len(train) == 30
    # the eval pairs do not depend on the training seed; the training pairs do
    train2, held2, _ = bn.build_data(docs, pairs_per_document=5, seed=1, max_pairs=12, eval_pairs=5)
    assert held2.anchor == held.anchor and len(train2) == 12 and train2.anchor != train.anchor[:12]
    with pytest.raises(ValueError, match="too many"):
        bn.build_data(docs, pairs_per_document=5, seed=0, max_pairs=None, eval_pairs=10_000)

    args = bn.parse_args(["--methods", "all", "--steps", "7"])
    assert args.methods == ["frozen", "simsiam", "mnrl", "all-negatives"]
    frozen = bn.row_settings(args, "frozen")
    assert frozen == bn.row_settings(bn.parse_args(["--methods", "frozen", "--steps", "9", "--lr", "1"]), "frozen")
    assert bn.row_settings(args, "simsiam")["steps"] == 7
    for bad in (
        ["--methods", "nope"],
        ["--methods", "mnrl", "--max-pairs", "8"],
        ["--methods", "mnrl", "--steps", "0"],
    ):
        with pytest.raises(SystemExit):
            bn.parse_args(bad)

    metrics = {f"top{k}_accuracy": 0.5 for k in bn.TOP_KS} | {"mrr": 0.25}
    rows = [
        {**frozen, "status": "ok", "metrics": metrics, "data": info, "threads": 1},
        {
            **bn.row_settings(args, "simsiam"),
            "status": "ok",
            "metrics": metrics,
            "final_output_std": 0.02,
            "threads": 1,
        },
        {**bn.row_settings(args, "mnrl"), "status": "failed", "error": "boom", "threads": 1},
    ]
    md = bn.render_markdown({"meta": {}, "rows": rows})
    assert "| *random (k/N, N = 5)* | 0.2000 | 1.0000 |" in md  # k / N beside the rows
    assert "| simsiam (seed 0) | 0.5000 |" in md and "0.0200" in md
    assert "- mnrl (steps 7, seed 0): boom" in md
