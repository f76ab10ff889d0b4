"""sbert_align.data: loading, label encoding, validation carving, pair symmetrisation."""

from __future__ import annotations

import csv
import hashlib
import json
import warnings

import pytest

from sbert_align import data as D
from sbert_align.data import named


def _write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_bundled_trec_is_verbatim_and_loads_both_label_sets():
    digests = {
        "trec_train.csv": "0583faade01ba98ef0f7f184fb07cc214a2f597d23e4647edcfd0030ec5ff107",
        "trec_test.csv": "4032e88005eda2ae03a47e9ce2d236ec6de7a6f501b7921eaa7276429b070198",
    }
    for name, digest in digests.items():
        assert hashlib.sha256(D.bundled_path(name).read_bytes()).hexdigest() == digest
    t6, t50 = D.load_splits("trec6"), D.load_splits("trec50")
    assert len(t6.texts("train")) == 5452 and len(t6.texts("test")) == 500
    assert t6.label_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(t50.label_names) == 50  # test's 42 fine classes are all in train
    # coarse counts in train from the data README
    counts = {n: 0 for n in t6.label_names}
    for s in t6.label_strings("train"):
        counts[s] += 1
    assert counts == {"ABBR": 86, "DESC": 1162, "ENTY": 1250, "HUM": 1223, "LOC": 835, "NUM": 896}
    # fine labels refine coarse ones, row for row
    assert all(f.split(":")[0] == c for f, c in zip(t50.label_strings("test"), t6.label_strings("test")))


def test_label_encoding_round_trip_and_numeric_order():
    ids, names = D.encode_labels(["b", "a", "c", "a"])
    assert names == ["a", "b", "c"] and ids == [1, 0, 2, 0]
    assert D.decode_labels(ids, names) == ["b", "a", "c", "a"]
    ids, names = D.encode_labels([10, 2, 1, 2])
    assert names == ["1", "2", "10"] and ids == [2, 1, 0, 1]
    with pytest.raises(ValueError, match="not one of"):
        D.encode_labels(["x"], names=["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        D.decode_labels([3], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        D.encode_labels([])


def test_csv_tsv_jsonl_files_and_folders(tmp_path):
    rows = [(f"text number {i}, with comma", ["x", "y", "z"][i % 3]) for i in range(30)]
    csv_path = _write_csv(tmp_path / "a.csv", ["text", "label"], rows)
    tsv_path = _write_csv(tmp_path / "a.tsv", ["text", "label"], rows, delimiter="\t")
    jsonl_path = tmp_path / "a.jsonl"
    jsonl_path.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows) + "\n")
    loaded = [D.load_splits(p, test_fraction=0.2, seed=1) for p in (csv_path, tsv_path, jsonl_path)]
    for d in loaded:
        assert len(d.texts("train")) == 24 and len(d.texts("test")) == 6
        assert d.label_names == ["x", "y", "z"]
        assert set(d.texts("train")).isdisjoint(d.texts("test"))
    assert loaded[0].texts("test") == loaded[1].texts("test") == loaded[2].texts("test")  # same seed, same carve

    folder = tmp_path / "pairs"
    folder.mkdir()
    _write_csv(folder / "train.csv", ["text1", "text2", "label"], [("a b", "c d", 1), ("e", "f", 0)])
    _write_csv(folder / "test.csv", ["text1", "text2", "label"], [("g", "h", 0)])
    p = D.load_splits(folder)
    assert p.is_pairs and p.pairs("train") == [("a b", "c d"), ("e", "f")] and p.labels("test") == [0]
    ds = p.dataset("train")
    assert ds.column_names == ["text1", "text2", "label"]


def test_scores_stay_floats_and_custom_columns(tmp_path):
    folder = tmp_path / "sts"
    folder.mkdir()
    _write_csv(folder / "train.csv", ["sentence1", "sentence2", "score"], [("a", "b", "3.800"), ("c", "d", "0.5")])
    _write_csv(folder / "test.csv", ["sentence1", "sentence2", "score"], [("e", "f", "5.000")])
    d = D.load_splits(folder)
    assert d.label_names is None and d.labels("train") == [3.8, 0.5] and d.text_columns == ("text1", "text2")
    f = _write_csv(tmp_path / "q.csv", ["question", "intent"], [(f"q{i}", "i" + str(i % 2)) for i in range(10)])
    d = D.load_splits(f, text_columns=["question"], label_column="intent")
    assert d.label_names == ["i0", "i1"]


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a known name"):
        D.load_splits("no-such-set")
    with pytest.raises(ValueError, match="no such file"):
        D.load_splits("some/dir/missing.csv")
    bad = _write_csv(tmp_path / "bad.csv", ["body", "label"], [("x", "a"), ("y", "b"), ("z", "a")])
    with pytest.raises(ValueError, match="cannot find the text column"):
        D.load_splits(bad)
    with pytest.raises(ValueError, match="label column 'nope' not found"):
        D.load_splits(bad, text_columns=["body"], label_column="nope")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(ValueError, match="unsupported file type"):
        D.read_table(tmp_path / "x.txt")
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        D.load_splits(tmp_path / "broken.jsonl")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(ValueError, match=r"must hold train\.\* and test\.\*"):
        D.load_splits(tmp_path / "empty_folder")


def test_shared_sets_need_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SBERT_ALIGN_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(named, "shared_data_dir", lambda: None)
    with pytest.raises(ValueError, match="needs the shared data folder"):
        D.load_splits("banking77")
    fake = tmp_path / "shared"
    (fake / "banking77").mkdir(parents=True)
    _write_csv(fake / "banking77" / "train.csv", ["text", "label"], [("card?", "card_arrival"), ("pin", "pin")])
    _write_csv(fake / "banking77" / "test.csv", ["text", "label"], [("where card", "card_arrival")])
    monkeypatch.undo()
    monkeypatch.setenv("SBERT_ALIGN_DATA_DIR", str(fake))
    d = D.load_splits("banking77")
    assert d.label_names == ["card_arrival", "pin"] and d.labels("test") == [0]


def test_hub_name_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="could not load 'someone/not-a-real-set' from the Hugging Face hub"):
        D.load_splits("hf:someone/not-a-real-set")


def test_from_hf_dataset_keeps_class_names():
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    dd = DatasetDict(
        {
            "train": Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=feats),
            "validation": Dataset.from_dict({"text": ["meh"], "label": [0]}, features=feats),
        }
    )
    d = D.from_hf_dataset(dd, name="toy")
    assert d.label_names == ["neg", "pos"] and d.label_strings("train") == ["neg", "pos", "pos"]
    assert d.texts("test") == ["meh"]  # validation used as test when there is no test split


def test_validation_is_carved_from_train_stratified_and_seeded():
    d = D.load_splits("trec6")
    a = D.train_validation_split(d, 0.1, seed=3)
    b = D.train_validation_split(d, 0.1, seed=3)
    c = D.train_validation_split(d, 0.1, seed=4)
    assert a.texts("validation") == b.texts("validation") != c.texts("validation")
    assert a.texts("test") == d.texts("test")  # test untouched
    assert len(a.texts("train")) + len(a.texts("validation")) == 5452
    val_counts = {n: a.label_strings("validation").count(n) for n in a.label_names}
    assert val_counts["ABBR"] == 9 and val_counts["ENTY"] == 125  # 10% of 86 and of 1250, rounded
    with pytest.raises(ValueError, match="already has a validation"):
        D.train_validation_split(a)


def _pair_set(train, test):
    def cols(rows):
        return {"text1": [r[0] for r in rows], "text2": [r[1] for r in rows], "label": [r[2] for r in rows]}

    return D.SplitSet("pairs", {"train": cols(train), "test": cols(test)}, ("text1", "text2"), ["0", "1"])


def test_symmetrize_pairs_after_split_only():
    from datasets import Dataset, DatasetDict

    s = _pair_set([("a", "b", 1), ("c", "d", 0)], [("e", "f", 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = D.symmetrize_pairs(s)
    assert out.pairs("train") == [("a", "b"), ("c", "d"), ("b", "a"), ("d", "c")]
    assert out.labels("train") == [1, 0, 1, 0] and out.pairs("test") == [("e", "f")]

    flat = {"text1": ["a"], "text2": ["b"], "label": [1]}
    for unsplit in (Dataset.from_dict(flat), flat, [("a", "b", 1)]):
        with pytest.raises(ValueError, match="refusing unsplit data"):
            D.symmetrize_pairs(unsplit)
    with pytest.raises(ValueError, match="no held-out split"):
        D.symmetrize_pairs(DatasetDict({"train": Dataset.from_dict(flat)}))

    dd = DatasetDict({"train": Dataset.from_dict(flat), "validation": Dataset.from_dict(flat)})
    with pytest.warns(D.PairLeakWarning, match="1 pair.*'validation' split also appear in train"):
        out = D.symmetrize_pairs(dd)
    assert out["train"]["text1"] == ["a", "b"] and out["validation"].num_rows == 1


def test_symmetrize_warns_on_swapped_leak_and_refuses_text_sets():
    s = _pair_set([("a", "b", 1), ("c", "d", 0)], [("b", "a", 1)])
    with pytest.warns(D.PairLeakWarning, match="'test' split"):
        D.symmetrize_pairs(s)
    with pytest.raises(ValueError, match="not a pair set"):
        D.symmetrize_pairs(D.load_splits("trec6"))


def test_subsample_is_seeded_and_bounded():
    d = D.load_splits("trec6")
    a, b = d.subsample("train", 100, seed=1), d.subsample("train", 100, seed=1)
    assert a.texts("train") == b.texts("train") and len(a.texts("train")) == 100
    assert d.subsample("train", None) is d


# ----------------------------------------------------------------------------------------------- package layout


def test_old_names_still_import_and_data_imports_no_other_package_but_files():
    import ast
    from pathlib import Path

    from sbert_align.data import (  # noqa: F401
        DEFAULT_DEMO_DATA,
        NAMED_SETS,
        LabelEncoding,
        PairLeakWarning,
        SplitSet,
        UnseenLabelWarning,
        bundled_path,
        decode_labels,
        encode_labels,
        from_hf_dataset,
        load_splits,
        read_table,
        shared_data_dir,
        symmetrize_pairs,
        train_validation_split,
    )

    assert issubclass(UnseenLabelWarning, UserWarning)
    assert bundled_path("trec_train.csv").parent.name == "_bundled"
    assert bundled_path("trec_train.csv").parent.parent.name == "sbert_align"
    package = Path(D.__file__).parent
    assert package.name == "data" and not (package.parent / "data.py").exists()
    modules = {p.stem for p in package.glob("*.py")}
    assert {"container", "carving", "columns", "building", "loading", "texts"} <= modules and "splits" not in modules
    for public in D.__all__:
        assert hasattr(D, public), public
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                # The one exception: the leaf module of atomic writes, which imports nothing of the package.
                if target in ("..files", "sbert_align.files"):
                    continue
                assert not (node.level >= 2 or target.startswith("sbert_align")), (module.name, target)


# ----------------------------------------------------------------------------------------------- one label encoder


def test_one_and_one_point_zero_are_one_class(tmp_path):
    ids, names = D.encode_labels([1, 1.0, "1", " 1 ", "1.0", 2])
    assert ids == [0, 0, 0, 0, 0, 1] and names == ["1", "2"]
    assert D.LabelEncoding.fit(["1.0"], [True, 1]).names == ("1",)
    with pytest.raises(ValueError, match=r"\['1'\] occur more than once"):
        D.LabelEncoding(("1", "1.0"))
    with pytest.raises(ValueError, match="non-integer number"):
        D.encode_labels(["a", 0.5])
    with pytest.raises(ValueError, match="non-integer number"):
        D.encode_labels(["a", "2.5"])
    for missing in (None, float("nan"), "", "  "):
        with pytest.raises(ValueError, match="not a class label"):
            D.encode_labels(["a", missing])
    # In files: the CSV strings "1" and "1.0" (and the JSON numbers 1 and 1.0) are one class.
    rows = [(f"t{i}", ["1", "1.0", "2", "2.0"][i % 4]) for i in range(20)]
    d = D.load_splits(_write_csv(tmp_path / "nums.csv", ["text", "label"], rows))
    assert d.label_names == ["1", "2"]
    path = tmp_path / "nums.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": [1, 1.0, 2][i % 3]}) for i in range(12)))
    assert D.load_splits(path).label_names == ["1", "2"]


def test_non_integer_label_in_a_class_column_names_file_and_line(tmp_path):
    rows = [("a", "x"), ("b", "y"), ("c", "1.5"), ("d", "x")]
    bad = _write_csv(tmp_path / "mixed.csv", ["text", "label"], rows)
    with pytest.raises(ValueError, match=r"mixed\.csv line 4, label column 'label': '1\.5' is a non-integer number"):
        D.load_splits(bad)
    # Numbers only, some of them not integers: a similarity score column, kept as floats.
    scores = _write_csv(tmp_path / "sim.csv", ["text1", "text2", "label"], [("a", "b", "0.5"), ("c", "d", "4")] * 3)
    assert D.load_splits(scores).label_names is None


# ----------------------------------------------------------------------------------------------- reading


def test_ragged_csv_rows_name_the_file_and_line(tmp_path):
    path = tmp_path / "ragged.csv"
    # Line 2-3: one record over two lines (a quoted newline); line 5: one field; line 6: four fields.
    path.write_text('text,label\n"two\nlines",a\nfine,b\nshort\nx,y,z,many\nok,a\n', encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"ragged\.csv line 5: 1 field where the header has 2 \(text, label\); 2 rows"
    ):
        D.load_splits(path)
    with pytest.raises(ValueError, match=r"ragged\.csv line 5"):
        D.read_table(path)
    tsv = tmp_path / "ragged.tsv"
    tsv.write_text("text\tlabel\nfine\ta\n\nx\ty\tz\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ragged\.tsv line 4: 3 fields where the header has 2"):
        D.load_splits(tsv)
    good = tmp_path / "good.csv"
    good.write_text('\ufefftext,label\n"two\nlines",a\n\nfine,b\n', encoding="utf-8")  # BOM, blank line
    rows = D.read_rows(good)
    assert rows.rows == [{"text": "two\nlines", "label": "a"}, {"text": "fine", "label": "b"}]
    assert [rows.where(i) for i in range(2)] == [f"{good} line 2", f"{good} line 5"]


def test_broken_quoting_and_headers_name_the_line(tmp_path):
    quoted = tmp_path / "quote.csv"
    quoted.write_text('text,label\nfine,a\n"closed"then more,b\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"quote\.csv line 3: unreadable CSV"):
        D.read_table(quoted)
    open_quote = tmp_path / "open.csv"
    open_quote.write_text('text,label\nfine,a\n"never closed,b\nmore,c\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"open\.csv line 3: unreadable CSV .*never closed"):
        D.read_table(open_quote)
    twice = tmp_path / "twice.csv"
    twice.write_text("text,label,text\na,b,c\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"twice\.csv line 1: the header names \['text'\] more than once"):
        D.read_table(twice)
    items = tmp_path / "items.json"
    items.write_text('[{"text": "a", "label": 1}, ["not", "an", "object"]]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"items\.json item 1 is a JSON list, not an object"):
        D.read_table(items)


def test_jsonl_rows_missing_a_column_or_a_label(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c"}, {"label": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"rows\.jsonl line 3 lacks column\(s\) \['label'\]; 2 rows in all without a needed column"
    ):
        D.load_splits(path)
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": null}\n{"text": "c", "label": "y"}\n')
    with pytest.raises(
        ValueError, match=r"rows\.jsonl line 3 has no value in the label column 'label'; 1 row in all without"
    ):
        D.load_splits(path)
    empty_label = _write_csv(tmp_path / "nolabel.csv", ["text", "label"], [("a", "x"), ("b", " "), ("c", "")])
    with pytest.raises(ValueError, match=r"nolabel\.csv line 3 has no value in the label column 'label'; 2 rows"):
        D.load_splits(empty_label)


# ----------------------------------------------------------------------------------------------- empty texts


def test_empty_texts_are_refused_with_file_and_line(tmp_path):
    rows = [("a", "x"), ("b", "y"), ("  ", "x"), ("c", "y"), ("", "x"), ("d", "y")]
    path = _write_csv(tmp_path / "blank.csv", ["text", "label"], rows)
    with pytest.raises(
        ValueError, match=r"2 empty or whitespace-only texts; the first is at .*blank\.csv line 4 \(column 'text'\)"
    ):
        D.load_splits(path)
    kept = D.load_splits(path, allow_empty_texts=True, test_fraction=0.5)
    assert sorted(kept.texts("train") + kept.texts("test")) == sorted(r[0] for r in rows)
    assert kept.allow_empty_texts and kept.subsample("train", 1).allow_empty_texts  # kept through replace()
    folder = tmp_path / "pairs"
    folder.mkdir()
    _write_csv(folder / "train.csv", ["text1", "text2", "label"], [("a", "b", 1), ("c", "d", 0)])
    _write_csv(folder / "test.csv", ["text1", "text2", "label"], [("e", "f", 1), ("g", "\t", 0)])
    with pytest.raises(ValueError, match=r"1 empty or whitespace-only text; the first is at .*test\.csv line 3"):
        D.load_splits(folder)


def test_empty_texts_in_memory_name_split_and_row():
    from datasets import Dataset, DatasetDict

    dd = DatasetDict(
        {
            "train": Dataset.from_dict({"text": ["a", "b", "c"], "label": ["x", "y", "x"]}),
            "test": Dataset.from_dict({"text": ["d", " "], "label": ["x", "y"]}),
        }
    )
    with pytest.raises(ValueError, match=r"toy: 1 empty or whitespace-only text; the first is at split 'test' row 1"):
        D.from_hf_dataset(dd, name="toy")
    assert D.from_hf_dataset(dd, name="toy", allow_empty_texts=True).texts("test") == ["d", " "]
    with pytest.raises(ValueError, match=r"in split 'train' row 2 \(column 'text'\)"):
        D.SplitSet("mem", {"train": {"text": ["a", "b", ""], "label": [0, 1, 0]}, "test": {"text": [], "label": []}})


# ----------------------------------------------------------------------------------------------- unseen test labels


def test_unseen_test_labels_warn_with_count_and_names(tmp_path):
    folder = tmp_path / "open_set"
    folder.mkdir()
    _write_csv(folder / "train.csv", ["text", "label"], [("a", "x"), ("b", "y"), ("c", "x")])
    _write_csv(folder / "test.csv", ["text", "label"], [("d", "x"), ("e", "new1"), ("f", "new2"), ("g", "new1")])
    with pytest.warns(
        D.UnseenLabelWarning, match=r"'test' split holds 2 labels that never occur in train \(3 items\)"
    ):
        d = D.load_splits(folder)
    assert d.label_names == ["new1", "new2", "x", "y"]  # still encoded, so they can be reported
    many = tmp_path / "many"
    many.mkdir()
    _write_csv(many / "train.csv", ["text", "label"], [("a", "x"), ("b", "y")])
    _write_csv(many / "test.csv", ["text", "label"], [(f"t{i}", f"c{i:02d}") for i in range(13)])
    with pytest.warns(D.UnseenLabelWarning) as caught:
        D.load_splits(many)
    message = str(caught[0].message)
    assert "13 labels" in message and "'c09'" in message and "'c10'" not in message and "(3 more)" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.load_splits("trec50")  # its 42 test classes all occur in train


# ----------------------------------------------------------------------------------------------- messages


def test_column_messages_point_to_the_keyword_and_the_option(tmp_path):
    bad = _write_csv(tmp_path / "cols.csv", ["body", "tag"], [(f"x{i}", "ab"[i % 2]) for i in range(10)])
    with pytest.raises(ValueError, match=r"Pass text_columns=\[\.\.\.\] \(command line: --text-column NAME\)"):
        D.load_splits(bad)
    with pytest.raises(ValueError, match=r"Pass label_column=\.\.\. \(command line: --label-column NAME\)"):
        D.load_splits(bad, text_columns=["body"])
    assert D.load_splits(bad, text_columns="body", label_column="tag").label_names == ["a", "b"]
    with pytest.raises(ValueError, match="labels: 'z' is not one of the 2 known classes \\('a', 'b'\\)"):
        D.encode_labels(["z"], names=["a", "b"])


# ----------------------------------------------------------------------------------------------- splitting


def test_validation_split_is_sklearn_stratified_and_reproducible():
    from sklearn.model_selection import train_test_split

    d = D.load_splits("trec6")
    labels = d.labels("train")
    n = len(labels)
    _, held = train_test_split(list(range(n)), test_size=round(n * 0.1), random_state=7, stratify=labels)
    a = D.train_validation_split(d, 0.1, seed=7)
    assert a.texts("validation") == [d.texts("train")[i] for i in sorted(held)]
    assert a.texts("train") == [t for i, t in enumerate(d.texts("train")) if i not in set(held)]  # order kept
    assert a.notes[-1] == "validation carved from train: 10%, seed 7 (stratified)"


def test_pair_sets_split_without_stratification():
    from sklearn.model_selection import train_test_split

    rows = [(f"a{i}", f"b{i}", i % 2) for i in range(40)]
    s = _pair_set(rows, [("x", "y", 1)])
    _, held = train_test_split(list(range(40)), test_size=8, random_state=3, shuffle=True)
    out = D.train_validation_split(s, 0.2, seed=3)
    assert out.pairs("validation") == [(f"a{i}", f"b{i}") for i in sorted(held)]
    assert out.notes[-1].endswith("(not stratified)")


def test_stratification_fallback_warns_and_keeps_singletons_in_train():
    texts = [f"t{i}" for i in range(21)]
    labels = [0] * 10 + [1] * 10 + [2]  # class 2 has a single row: sklearn cannot stratify
    s = D.SplitSet(
        "toy",
        {"train": {"text": texts, "label": labels}, "test": {"text": ["q"], "label": [0]}},
        ("text",),
        ["a", "b", "c"],
    )
    with pytest.warns(UserWarning, match=r"cannot stratify with scikit-learn \(1 class\(es\) have a single row"):
        a = D.train_validation_split(s, 0.2, seed=1)
    assert "t20" in a.texts("train")
    assert a.label_strings("validation").count("a") == 2 and a.label_strings("validation").count("b") == 2
    with pytest.warns(UserWarning, match="cannot stratify"):
        b = D.train_validation_split(s, 0.2, seed=1)
    assert a.texts("validation") == b.texts("validation")


def test_test_split_carved_from_a_single_file_is_stratified(tmp_path):
    rows = [(f"text {i}", "x" if i < 40 else "y") for i in range(50)]  # 40 x, 10 y
    path = _write_csv(tmp_path / "one.csv", ["text", "label"], rows)
    d = D.load_splits(path, test_fraction=0.2, seed=5)
    assert sorted(d.label_strings("test")) == ["x"] * 8 + ["y"] * 2
    assert d.notes == [f"test split carved from {path}: 20%, seed 5 (stratified)"]
    assert D.load_splits(path, test_fraction=0.2, seed=5).texts("test") == d.texts("test")
    with pytest.raises(ValueError, match="test_fraction"):
        D.load_splits(path, test_fraction=1.0)


# ----------------------------------------------------------------------------------------------- one rule each


def test_one_carving_check_for_fraction_and_row_count(tmp_path):
    path = _write_csv(tmp_path / "one_row.csv", ["text", "label"], [("a", "x")])
    for bad in (0, 1, 1.5, True, "0.2"):
        with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\)"):
            D.carve_indices(10, bad, what="test")
        with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\)"):
            D.load_splits(path, test_fraction=bad)
    with pytest.raises(ValueError, match=r"cannot carve a test split out of 1 row\(s\); at least 2 are needed"):
        D.load_splits(path)
    one = D.SplitSet(
        "one", {"train": {"text": ["a"], "label": [0]}, "test": {"text": ["b"], "label": [0]}}, label_names=["a"]
    )
    with pytest.raises(ValueError, match=r"validation_fraction: expected a number in \(0, 1\), got 0"):
        D.train_validation_split(one, 0)
    with pytest.raises(ValueError, match=r"one \(train\): cannot carve a validation split out of 1 row\(s\)"):
        D.train_validation_split(one, 0.5)


def test_one_unseen_label_check_for_splits_and_queries():
    import sbert_align.data.labels as labels_module
    from sbert_align.data import container
    from sbert_align.evaluation import knn

    assert container.check_unseen_labels is knn.check_unseen_labels is labels_module.check_unseen_labels
    assert D.unseen_labels(["a", "c", "d", "c"], ["a", "b", 1]) == ["c", "d"]
    with pytest.warns(
        D.UnseenLabelWarning, match=r"held holds 2 labels that never occur in seen \(3 items\): '2', 'c'"
    ):
        unseen = D.check_unseen_labels(["c", 2.0, "1", "c"], [1, "a"], held_out="held", seen="seen")
    assert unseen == ["2", "c"]  # 1, 1.0 and "1" are one class; numbers first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.check_unseen_labels([1, "a"], ["1.0", " a "], held_out="held", seen="seen") == []
    data = D.SplitSet(
        "toy",
        {
            "train": {"text": [f"t{i}" for i in range(8)], "label": [0] * 7 + [1]},
            "test": {"text": ["q"], "label": [0]},
        },
        label_names=["a", "b"],
    )
    with pytest.warns(
        D.UnseenLabelWarning, match=r"toy: the 'validation' split holds 1 label .* \(1 item\): 'b'"
    ) as w:
        D.train_validation_split(data, 0.25, seed=1, stratify=False)  # row 7 (class b) held out
    assert w[0].filename == __file__  # the warning points at the caller


def test_one_empty_text_rule_for_data_and_evaluators():
    from sbert_align.evaluation import _common

    assert _common.find_empty_texts is D.find_empty_texts
    assert D.find_empty_texts(["a", "", " \t\n", None, "b", 0]) == [1, 2, 3]
    assert not hasattr(D.Rows, "take")
