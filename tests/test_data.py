"""sbert_align.data: loading, label encoding, validation carving, pair symmetrisation."""

from __future__ import annotations

import csv
import hashlib
import json
import warnings

import pytest

from sbert_align import data as D


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
    monkeypatch.setattr(D, "shared_data_dir", lambda: None)
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
