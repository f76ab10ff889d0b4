"""The model card (sentence-transformers' own generator) of a model trained with our losses and evaluators: the
losses with their configs and citations, the evaluator's metrics as logged, and, for ``sbert-align train``, the
command that reproduces the run; ``--push-to-hub`` passes through to ``model.push_to_hub`` (monkeypatched: no
network here)."""

from __future__ import annotations

import csv
import json
import random
import re
import shlex
from pathlib import Path

import pytest
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from test_training import toy_classes

from sbert_align import __version__, cli
from sbert_align.cli.train import RUN_ONLY_FIELDS, SbertAlignModelCardData, TrainConfig, train_command
from sbert_align.evaluation import KNNEvaluator
from sbert_align.losses import ClassAlignmentLoss

CLASS_WORDS = {"geo": ["city", "country", "river"], "bank": ["money", "card", "bank"], "mood": ["love", "happy"]}


def _section(card: str, heading: str) -> str:
    """The text under ``heading`` (a whole line, e.g. ``"## Citation"``) up to the next heading of its level or
    higher."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = card.splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def _table(text: str) -> list[dict[str, str]]:
    """The first Markdown table in ``text`` as rows of {column: cell} (cells stripped, bold marks removed)."""
    rows = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    cells = [[c.strip().strip("*") for c in row.strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]  # cells[1] is the |:---| line
    return [dict(zip(header, row)) for row in body]


def _json_block(text: str, after: str) -> dict:
    """The ```json block that follows the first occurrence of ``after``."""
    rest = text[text.index(after) :]
    return json.loads(re.search(r"```json\n(.*?)\n\s*```", rest, re.S).group(1))


@pytest.mark.parametrize("matryoshka", [False, True], ids=["class-alignment", "matryoshka"])
def test_card_of_a_trainer_run_names_losses_citations_and_logged_metrics(tiny_model, tmp_path, matryoshka):
    texts, labels = toy_classes(8)
    test_texts, test_labels = toy_classes(4, seed=1)
    inner = ClassAlignmentLoss(tiny_model, memory_size=16, memory_warmup_steps=1)
    loss = MatryoshkaLoss(tiny_model, inner, [32, 16, 8]) if matryoshka else inner
    evaluator = KNNEvaluator(texts, labels, test_texts, test_labels, k=3, name="toy-dev", write_csv=False)
    args = Args(
        str(tmp_path / "trainer"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
        evaluator=evaluator,
    )
    trainer.train()
    tiny_model.save(str(tmp_path / "model"))
    card = (tmp_path / "model" / "README.md").read_text(encoding="utf-8")

    # the loss, with its config as get_config_dict gives it (JSON values)
    assert "loss:ClassAlignmentLoss" in card.split("---")[1]  # a tag in the YAML front matter
    training = _section(card, "## Training Details")
    if matryoshka:
        assert "[<code>MatryoshkaLoss</code>]" in training and "loss:MatryoshkaLoss" in card.split("---")[1]
        config = _json_block(training, "* Loss:")
        assert config == json.loads(json.dumps(loss.get_config_dict()))
        assert config["loss"] == "ClassAlignmentLoss" and config["matryoshka_dims"] == [32, 16, 8]
    else:
        assert "* Loss: <code>sbert_align.losses.class_alignment.ClassAlignmentLoss</code>" in training
        config = _json_block(training, "* Loss:")
        assert config == json.loads(json.dumps(inner.get_config_dict()))
        assert (config["memory_size"], config["memory_warmup_steps"], config["objective"]) == (16, 1, "supcon")

    # the citations: SupCon and the cross-batch memory for ClassAlignmentLoss (and Matryoshka's own)
    citations = _section(card, "## Citation")
    class_alignment = _section(citations, "#### ClassAlignmentLoss")
    assert "@inproceedings{khosla2020supervised," in class_alignment
    assert "@inproceedings{wang2020xbm," in class_alignment
    if matryoshka:
        assert "@misc{kusupati2024matryoshka," in _section(citations, "#### MatryoshkaLoss")

    # the evaluator: its class, config and the metrics of its last evaluation, as the trainer logged them
    evals = [h for h in trainer.state.log_history if "eval_toy-dev_accuracy" in h]
    assert [h["step"] for h in evals] == [2, 4]
    metrics = _section(card, "#### kNN Classification")
    assert "* Dataset: `toy-dev`" in metrics
    assert "<code>sbert_align.evaluation.knn.KNNEvaluator</code>" in metrics
    assert _json_block(metrics, "with these parameters") == {"k": 3, "weights": "uniform", "leave_one_out": False}
    table = {row["Metric"]: float(row["Value"]) for row in _table(metrics)}
    assert set(table) == {"accuracy", "macro_f1"}
    for name, value in table.items():
        assert value == pytest.approx(evals[-1][f"eval_toy-dev_{name}"], abs=5e-5)
    assert "**accuracy**" in metrics  # the primary metric

    # the training logs: the loss at every step, the primary metric at each evaluation
    logs = {int(row["Step"]): row for row in _table(_section(card, "### Training Logs"))}
    assert sorted(logs) == [1, 2, 3, 4]
    for h in trainer.state.log_history:
        if "loss" in h:
            assert float(logs[h["step"]]["Training Loss"]) == pytest.approx(h["loss"], abs=5e-5)
    for h in evals:
        assert float(logs[h["step"]]["toy-dev_accuracy"]) == pytest.approx(h["eval_toy-dev_accuracy"], abs=5e-5)
    hyper = _section(card, "#### Non-Default Hyperparameters")
    assert "- `max_steps`: 4" in hyper and "- `learning_rate`: 0.001" in hyper
    assert "### Reproduce the training" not in card  # only runs of sbert-align train know their command


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    for split, n in (("train", 16), ("test", 6)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for label, words in CLASS_WORDS.items():
                for _ in range(n):
                    writer.writerow([" ".join(rng.choice(words + ["the", "a"]) for _ in range(5)), label])
    return folder


def _config(argv: list[str]) -> TrainConfig:
    return TrainConfig.from_args(cli.build_parser().parse_args(argv))


def _without_run_only(config: TrainConfig) -> dict:
    return {k: v for k, v in vars(config).items() if k not in RUN_ONLY_FIELDS}


def test_cli_card_records_the_command_and_pushes_through_the_library(
    capsys, monkeypatch, tmp_path, tiny_model_dir, toy_dir
):
    from sbert_align.cli import train as train_module

    pushed = []

    def fake_push(self, repo_id, **kwargs):  # the library's push_to_hub, without the network
        folder = Path(kwargs.pop("local_model_path"))  # the saved folder goes as it is
        assert folder == out / "model"
        card = (folder / "README.md").read_text(encoding="utf-8")  # saved before pushing
        pushed.append((repo_id, kwargs, self.model_card_data.command, card, (folder / "knn_classifier").is_dir()))
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(SentenceTransformer, "push_to_hub", fake_push)
    monkeypatch.setattr(train_module, "_check_push", lambda config: None)  # HF_HUB_OFFLINE is set in the tests
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "class-alignment"]
    argv += ["--memory-size", "24", "--memory-warmup-steps", "1", "--epochs", "1", "--batch-size", "12"]
    argv += ["--lr", "1e-3", "--k", "3", "--seed", "3", "--text-column", "text", "--out", str(out), "--quiet"]
    argv += ["--threads", "1", "--push-to-hub", "someone/tiny-align", "--hub-private"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())

    # how to reproduce: the sbert-align version and a command that parses back to this run's settings
    reproduce = _section(card, "### Reproduce the training")
    assert f"sbert-align {__version__}" in reproduce
    command = re.search(r"```bash\n(.*?)\n```", reproduce, re.S).group(1)
    assert command == metrics["command"] and metrics["sbert_align_version"] == __version__
    words = shlex.split(command)
    assert words[:2] == ["sbert-align", "train"]
    assert not {"--quiet", "--threads", "--push-to-hub", "--hub-private"} & set(words)
    assert _without_run_only(_config(words[1:])) == _without_run_only(_config(argv))
    assert "--memory-size 24" in command and "--seed 3" in command and "--text-column text" in command

    # the rest of the card: the loss and its config, the data's name, the kNN metrics after training
    assert '"memory_size": 24' in _section(card, "## Training Details")
    assert f"#### {toy_dir.name}" in card and "- sbert-align" in card.split("---")[1]
    table = {row["Metric"]: float(row["Value"]) for row in _table(_section(card, "#### kNN Classification"))}
    assert table["accuracy"] == pytest.approx(metrics["after"]["test_accuracy"], abs=5e-5)
    logs = {int(row["Step"]): row for row in _table(_section(card, "### Training Logs"))}
    assert float(logs[0]["test_accuracy"]) == pytest.approx(metrics["before"]["test_accuracy"], abs=5e-5)

    # --push-to-hub: once, after saving, through model.push_to_hub with the repository and private=True
    # (the saved folder, with its kNN classifier and a card whose usage names the repository)
    [(repo_id, kwargs, pushed_command, pushed_card, with_classifier)] = pushed
    assert (repo_id, kwargs, pushed_command) == ("someone/tiny-align", {"private": True}, command)
    assert pushed_card == card and with_classifier
    assert 'SentenceTransformer("someone/tiny-align")' in card


def test_a_failed_push_keeps_the_saved_model(capsys, monkeypatch, tmp_path, tiny_model_dir, toy_dir):
    from sbert_align.cli import train as train_module

    calls = []

    def failing_push(self, repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        raise OSError("409 Client Error: You already created this model repo")

    monkeypatch.setattr(SentenceTransformer, "push_to_hub", failing_push)
    monkeypatch.setattr(train_module, "_check_push", lambda config: None)
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "all-negatives"]
    argv += ["--epochs", "1", "--batch-size", "24", "--out", str(out), "--quiet", "--push-to-hub", "someone/x"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "sbert-align: error: --push-to-hub someone/x: the push failed (409 Client Error" in err
    assert f"saved in {out / 'model'}" in err
    # the Hub's default visibility without --hub-private
    assert calls == [("someone/x", {"private": None, "local_model_path": str(out / "model")})]
    assert (out / "model" / "README.md").is_file() and (out / "metrics.json").is_file()


def test_push_is_refused_before_training_when_it_cannot_work(capsys, monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants

    from sbert_align.cli import train as train_module

    monkeypatch.setattr(train_module, "load_data", lambda *a, **kw: pytest.fail("must fail before loading data"))
    base = ["train", "--model", "m", "--data", "d", "--loss", "all-negatives", "--out", str(tmp_path / "o")]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert cli.main([*base, "--push-to-hub", "someone/x"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert cli.main([*base, "--push-to-hub", "someone/x"]) == 1
    assert "no Hugging Face token" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    assert cli.main([*base, "--hub-private"]) == 1
    assert "--hub-private needs --push-to-hub" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main([*base, "--push-to-hub", "a/b/c"])
    assert e.value.code == 2
    assert "expected a Hugging Face Hub repository id" in capsys.readouterr().err


def test_train_command_round_trips_through_the_parser():
    config = TrainConfig(
        model="minilm-l6",
        data="my data.csv",  # quoted for the shell
        loss="annealed-pair",
        out="runs/p",
        memory_size=8,
        memory_warmup_steps=2,
        objective="margin",
        temperature=0.05,
        epochs=3,
        batch_size=4,
        lr=3e-5,
        k=2,
        eval_steps=7,
        max_train_samples=100,
        max_seq_length=48,
        start_length=40,
        end_length=10,
        anneal_steps=50,
        text_columns=("q1", "q2"),
        label_column="dup",
        allow_empty_texts=True,
        device="cpu",
        seed=-1,
        quiet=True,
        overwrite=True,
        title="a title",
        push_to_hub="someone/x",
        hub_private=True,
    )
    command = train_command(config)
    assert command.startswith("sbert-align train --model minilm-l6 --data 'my data.csv' --loss annealed-pair")
    words = shlex.split(command)
    assert "--allow-empty-texts" in words and "--quiet" not in words and "--push-to-hub" not in words
    assert _without_run_only(_config(words[1:])) == _without_run_only(config)
    # every TrainConfig field but evals_per_epoch (no option) and the run-only ones is an option, all set above
    plain = TrainConfig(model="m", data="d", loss="all-negatives", out="o")
    changed = {k for k, v in vars(config).items() if v != getattr(plain, k)}
    assert changed | {"evals_per_epoch"} | set(RUN_ONLY_FIELDS) == set(vars(config))
    # defaults are left out
    assert train_command(plain) == "sbert-align train --model m --data d --loss all-negatives --out o"
    with pytest.raises(ValueError, match="evals_per_epoch"):
        train_command(TrainConfig(model="m", data="d", loss="all-negatives", out="o", evals_per_epoch=2))


def test_card_data_keeps_what_loading_filled_in(tiny_model):
    old = tiny_model.model_card_data
    new = SbertAlignModelCardData.from_card_data(old, command="sbert-align train ...", sbert_align_version="9")
    assert new.model is tiny_model and new.tags == old.tags and new.version == old.version
    assert (new.command, new.sbert_align_version) == ("sbert-align train ...", "9")
    tiny_model.model_card_data = new
    snippet = new.generate_usage_snippet()
    assert snippet.startswith("```python\n") and snippet.endswith("```bash\nsbert-align train ...\n```")
