"""``sbert-align train`` as a typed function: :class:`TrainConfig` -> :func:`train` -> :class:`TrainResult`.

The command line (:func:`run_train`) and ``sbert-align demo`` both build a :class:`TrainConfig` and call
:func:`train`. Outputs under ``out``: ``model/`` (replaced whole), ``metrics.json`` and ``training_curve.png``, each
written atomically. A non-empty ``out`` is refused unless ``overwrite=True``. On (text, label) data ``model/`` also
holds a :class:`~sbert_align.classifier.KNNClassifier` fitted on the train split (``model/knn_classifier/``, read by
``sbert-align predict`` and ``KNNClassifier.load``) unless ``no_classifier=True``.

The model card (``model/README.md``) is sentence-transformers' own: the losses with their configs and citations, the
evaluator's metrics, the training logs and hyperparameters. :class:`SbertAlignModelCardData` adds how to reproduce
the run: the ``sbert-align train`` command (:func:`train_command`) and the sbert-align version. With ``push_to_hub``
the saved model folder (with its kNN classifier) then goes to the Hugging Face Hub through the library's
``model.push_to_hub(..., local_model_path=...)``.

Example::

    from sbert_align.cli.train import TrainConfig, train

    result = train(TrainConfig(model="minilm-l6", data="trec6", loss="class-alignment", out="runs/t6",
                               memory_size=2048, epochs=1, max_train_samples=1000))
    result.metrics["after"]["test_accuracy"]
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData

from ..classifier import CLASSIFIER_FOLDER
from ..data import SplitSet
from ..files import atomic_dir, atomic_write_json
from .common import PROG, CLIError, DataOptions, Log, first_line, is_score_pairs, load_data
from .evaluate import make_evaluator
from .models import load_model

__all__ = [
    "LOSSES",
    "OBJECTIVES",
    "TrainConfig",
    "TrainResult",
    "SbertAlignModelCardData",
    "train",
    "train_command",
    "RUN_ONLY_FIELDS",
    "run_train",
    "check_out_folder",
]

LOSSES = ("class-alignment", "all-negatives", "annealed-pair")
OBJECTIVES = ("cosine_target", "supcon", "margin")
#: the label names annealed-pair accepts, in id order: the loss takes class id 1 as a matching pair and the top-k
#: evaluation the label named "1", so the names must be exactly these for the two to agree
PAIR_LABEL_NAMES = ("0", "1")


@dataclass
class TrainConfig:
    """Everything a training run depends on (the options of ``sbert-align train``).

    Args:
        model: alias, folder or hub name of the encoder to train.
        data: data name, file, folder or ``hf:NAME``.
        loss: one of :data:`LOSSES`.
        out: output folder (``model/``, ``metrics.json``, ``training_curve.png``).
        memory_size: class-alignment memory bank size (0: none).
        memory_warmup_steps: steps before the memory is used.
        objective: ``cosine_target``, ``supcon`` or ``margin`` (``None``: the loss's default).
        temperature: supcon temperature (``None``: the default).
        epochs: training epochs.
        batch_size: per-device batch size.
        lr: learning rate (10% linear warm-up).
        k: neighbours of the kNN evaluation.
        eval_steps: evaluate every N steps (``None``: see ``evals_per_epoch``).
        evals_per_epoch: with ``eval_steps=None``, evaluate this many times per epoch (every ``steps per epoch //
            evals_per_epoch`` steps, at least 1); ``None``: once per epoch. Not with ``eval_steps``.
        max_train_samples: subsample train (seeded).
        max_seq_length: token limit of the model.
        start_length: annealed-pair: first token length.
        end_length: annealed-pair: last token length.
        anneal_steps: annealed-pair: steps of the schedule.
        text_columns: text column(s) of a file / folder (``None``: detected).
        label_column: label column of a file / folder (``None``: detected).
        allow_empty_texts: keep rows with an empty text.
        seed: seed of the subsample, the initialisation and the data order.
        device: ``"auto"`` or ``"cpu"``.
        quiet: no progress bars.
        overwrite: allow a non-empty ``out``: ``model/`` is replaced whole, the other outputs file by file.
        title: title of the training curve (default ``"<loss> on <data>"``).
        push_to_hub: after saving, push the model to this new Hugging Face Hub repository (``"user/name"``) with
            ``model.push_to_hub`` (``None``: no push).
        hub_private: make that repository private (``False``: the Hub's default visibility).
        no_classifier: do not save the kNN classifier (by default, on (text, label) data, a
            :class:`~sbert_align.classifier.KNNClassifier` with ``k`` neighbours fitted on the train split is saved in
            ``model/knn_classifier/``).

    Example::

        from sbert_align.cli.train import TrainConfig

        cfg = TrainConfig(model="minilm-l6", data="trec6", loss="all-negatives", out="runs/a", epochs=2)
    """

    model: str
    data: str
    loss: str
    out: str | Path
    memory_size: int = 0
    memory_warmup_steps: int = 0
    objective: str | None = None
    temperature: float | None = None
    epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-5
    k: int = 5
    eval_steps: int | None = None
    evals_per_epoch: int | None = None
    max_train_samples: int | None = None
    max_seq_length: int | None = None
    start_length: int = 70
    end_length: int = 20
    anneal_steps: int = 1000
    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    allow_empty_texts: bool = False
    seed: int = 0
    device: str = "auto"
    quiet: bool = False
    overwrite: bool = False
    title: str | None = field(default=None, repr=False)
    push_to_hub: str | None = None
    hub_private: bool = False
    no_classifier: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {list(LOSSES)}, got {self.loss!r}.")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {list(OBJECTIVES)} or None, got {self.objective!r}.")
        if self.device not in ("auto", "cpu"):
            raise ValueError(f"device: expected 'auto' or 'cpu', got {self.device!r}.")
        for name in ("epochs", "batch_size", "k", "start_length", "end_length", "anneal_steps"):
            _check_int(name, getattr(self, name), 1)
        for name in ("memory_size", "memory_warmup_steps"):
            _check_int(name, getattr(self, name), 0)
        for name in ("eval_steps", "evals_per_epoch", "max_train_samples", "max_seq_length"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.eval_steps is not None and self.evals_per_epoch is not None:
            raise ValueError(
                f"evals_per_epoch: expected None when eval_steps is given ({self.eval_steps}), "
                f"got {self.evals_per_epoch}."
            )
        for name in ("lr", "temperature"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf):
                raise ValueError(f"{name}: expected a positive number, got {v!r}.")
        if self.push_to_hub is not None:
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(self.push_to_hub)
            except HFValidationError as e:
                raise ValueError(
                    f"push_to_hub: expected a Hub repository id 'user/name', got {self.push_to_hub!r} ({first_line(e)})"
                ) from None
        if self.hub_private and self.push_to_hub is None:
            raise ValueError("hub_private: applies only with push_to_hub (--hub-private needs --push-to-hub REPO).")
        self.text_columns = self.data_options.text_columns  # validated, and a tuple

    @property
    def data_options(self) -> DataOptions:
        """The column options as :class:`~sbert_align.cli.common.DataOptions`."""
        return DataOptions(self.text_columns, self.label_column, self.allow_empty_texts)

    @classmethod
    def from_args(cls, args: Any) -> TrainConfig:
        """A config from a parsed ``sbert-align train`` command line (attributes it lacks keep their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{n: getattr(args, n) for n in names if hasattr(args, n)})


def _check_int(name: str, v: Any, minimum: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}: expected {what}, got {v!r}.")


#: TrainConfig fields that do not change the trained model, left out of :func:`train_command` (``no_classifier``
#: changes what is saved beside the weights, not the weights)
RUN_ONLY_FIELDS = ("quiet", "overwrite", "title", "push_to_hub", "hub_private", "no_classifier")
#: TrainConfig fields whose option is not ``--<field-name>``
_OPTION_NAMES = {"text_columns": "--text-column"}


def train_command(config: TrainConfig) -> str:
    """The ``sbert-align train`` command line that repeats ``config``'s run, shell-quoted.

    The required options, then every option whose value differs from its default; options that do not change the
    trained model (:data:`RUN_ONLY_FIELDS`: ``--quiet``, ``--overwrite``, ``--push-to-hub``, ...) are left out.
    ``evals_per_epoch``, which has no option, is given as the ``--eval-steps`` it amounts to on the data
    (:func:`train` records it so). Parsing the result back gives the same :class:`TrainConfig` but for those fields.

    Example::

        from sbert_align.cli.train import TrainConfig, train_command

        train_command(TrainConfig(model="minilm-l6", data="trec6", loss="class-alignment", out="runs/t6",
                                  memory_size=2048, quiet=True))
        # 'sbert-align train --model minilm-l6 --data trec6 --loss class-alignment --out runs/t6 --memory-size 2048'
    """
    if config.evals_per_epoch is not None:
        raise ValueError("evals_per_epoch has no command-line option; give the config its eval_steps instead.")
    words = [PROG, "train"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name in RUN_ONLY_FIELDS or (not required and value == f.default):
            continue
        option = _OPTION_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):
            words.append(option)
        elif isinstance(value, (tuple, list)):
            words += [option, *map(str, value)]
        else:
            words += [option, str(value)]
    return shlex.join(words)


@dataclass
class SbertAlignModelCardData(SentenceTransformerModelCardData):
    """sentence-transformers' model card data, plus how to reproduce the run with ``sbert-align train``.

    The card is the library's own (losses, configs, citations, evaluator metrics, logs, hyperparameters);
    :meth:`generate_usage_snippet`, the hook the library gives subclasses for the card's usage section, appends a
    "Reproduce the training" part with ``command`` and ``sbert_align_version``. :func:`train` gives the model one.

    Args:
        command: the ``sbert-align train`` command line (see :func:`train_command`); ``None``: no such part.
        sbert_align_version: the version of sbert-align that trained the model.
        (the other arguments are ``SentenceTransformerModelCardData``'s.)

    Example::

        from sentence_transformers import SentenceTransformer
        from sbert_align.cli.train import SbertAlignModelCardData

        card = SbertAlignModelCardData(command="sbert-align train --model minilm-l6 ...", sbert_align_version="0.1.0")
        model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", model_card_data=card)
        # ... train, then model.save("out"): out/README.md holds the command
    """

    command: str | None = None
    sbert_align_version: str | None = None

    @classmethod
    def from_card_data(cls, card: SentenceTransformerModelCardData, **kwargs: Any) -> SbertAlignModelCardData:
        """This class with every field of ``card`` (what loading the model filled in already) and ``kwargs``."""
        fields = dataclasses.fields(card)
        new = cls(**{f.name: getattr(card, f.name) for f in fields if f.init}, **kwargs)
        for f in fields:
            if not f.init:
                setattr(new, f.name, getattr(card, f.name))
        return new

    def generate_usage_snippet(self) -> str:
        snippet = super().generate_usage_snippet()
        if not self.command:
            return snippet
        version = f" {self.sbert_align_version}" if self.sbert_align_version else ""
        return (
            f"{snippet}\n\n### Reproduce the training\n\n"
            f"This model was trained with sbert-align{version} by this command (options left out are at their "
            "defaults in that version):\n\n"
            f"```bash\n{self.command}\n```"
        )


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Args:
        metrics: the content of ``metrics.json`` (before / after metrics, curves, settings).
        model: the trained ``SentenceTransformer``.
        data: the data it was trained on.
        out: the output folder.
        classifier: the :class:`~sbert_align.classifier.KNNClassifier` saved in ``model/knn_classifier/`` (``None``:
            none was saved).
    """

    metrics: dict[str, Any]
    model: Any
    data: SplitSet
    out: Path
    classifier: Any = None


def check_out_folder(out: str | Path, overwrite: bool) -> Path:
    """Refuse an output folder that is a file, or that is not empty unless ``overwrite``; returns it as a path.

    Example::

        from sbert_align.cli.train import check_out_folder

        check_out_folder("runs/new", overwrite=False)        # fine when runs/new is missing or empty
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} is a file; expected a folder.")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise CLIError(
            f"--out {str(out)!r} is not empty; pass --overwrite to replace its model and results, or choose a new folder."
        )
    return out


def _check_loss_data(loss: str, data: SplitSet) -> None:
    if loss == "annealed-pair":
        if is_score_pairs(data):
            raise CLIError(
                f"--loss annealed-pair needs (text1, text2, label 0/1) pairs, but {data.name} has similarity scores "
                f"({data.summary()}); score pairs can be evaluated (sbert-align evaluate), not trained with this loss."
            )
        if not data.is_pairs or data.label_names is None:
            raise CLIError(f"--loss annealed-pair needs (text1, text2, label 0/1) pairs; {data.summary()}.")
        if tuple(data.label_names) != PAIR_LABEL_NAMES:
            names = ", ".join(repr(n) for n in data.label_names[:5]) + (", ..." if len(data.label_names) > 5 else "")
            raise CLIError(
                f"--loss annealed-pair needs (text1, text2, label 0/1) pairs with both labels 0 and 1 (1 = a matching "
                f"pair), but the labels of {data.name} are {names}; map them to 0/1 first."
            )
    elif data.is_pairs or data.label_names is None:
        raise CLIError(f"--loss {loss} needs (text, label) data; {data.summary()}.")


def _make_loss(config: TrainConfig, model: Any) -> Any:
    from ..losses import AllNegativesLoss, AnnealedPairLoss, ClassAlignmentLoss

    params: dict[str, Any] = {}
    if config.objective:
        params["objective"] = config.objective
    if config.temperature is not None:
        params["temperature"] = config.temperature
    if config.loss == "class-alignment":
        return ClassAlignmentLoss(
            model, memory_size=config.memory_size, memory_warmup_steps=config.memory_warmup_steps, **params
        )
    if config.loss == "all-negatives":
        return AllNegativesLoss(model, **params)
    return AnnealedPairLoss(
        model,
        start_length=config.start_length,
        end_length=config.end_length,
        anneal_steps=config.anneal_steps,
        **params,
    )


def _check_push(config: TrainConfig) -> None:
    """Refuse ``push_to_hub`` before training when it cannot work: the Hub switched off, or no token."""
    if config.push_to_hub is None:
        return
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise CLIError(f"--push-to-hub {config.push_to_hub}: the Hugging Face Hub is switched off (HF_HUB_OFFLINE=1).")
    if get_token() is None:
        raise CLIError(
            f"--push-to-hub {config.push_to_hub}: no Hugging Face token; log in (hf auth login) or set HF_TOKEN."
        )


def train(config: TrainConfig, log: Log = print) -> TrainResult:
    """Load, evaluate before, train through ``SentenceTransformerTrainer`` (evaluating each epoch, every
    ``eval_steps`` or ``evals_per_epoch`` times per epoch), evaluate after, and save ``model/``, ``metrics.json`` and
    ``training_curve.png`` under ``out``; on (text, label) data ``model/knn_classifier/`` too, a
    :class:`~sbert_align.classifier.KNNClassifier` (``k`` neighbours) fitted on the train split with the trained model
    (unless ``no_classifier``).

    The evaluator follows the data (:func:`~sbert_align.cli.evaluate.make_evaluator`): kNN on (text, label) data,
    query-key top-k on 0/1 pairs. Nothing is written under ``out`` before training has finished; ``out`` is checked
    at the start and again just before writing (another run may have filled it meanwhile: without ``overwrite`` that
    is an error, and nothing of it is replaced). The model folder is built under a temporary name and swapped in
    whole, and each file is written atomically.

    ``model/README.md`` is sentence-transformers' model card, with :class:`SbertAlignModelCardData`: the loss and its
    config and citation, the evaluator's metrics (step 0 is before training), the training logs and hyperparameters,
    the data's name, and the ``sbert-align train`` command that reproduces the run (:func:`train_command`; also
    ``metrics.json["command"]``). With ``push_to_hub``, once everything is saved, the model goes to that new Hub
    repository through the library's ``model.push_to_hub`` (``private=True`` with ``hub_private``).

    Args:
        config: the run's settings.
        log: progress lines.

    Returns:
        The metrics, the trained model, the data and the output folder.

    Raises:
        CLIError: a non-empty ``out`` without ``overwrite`` (at the start, or when training has finished), a loss
            that does not fit the data (annealed-pair: labels other than exactly 0 and 1), a model that cannot be
            loaded; ``push_to_hub`` with the Hub switched off or without a token (both before training), or a failed
            push (the model is saved by then).

    Example::

        from sbert_align.cli.train import TrainConfig, train

        res = train(TrainConfig(model="minilm-l6", data="trec6", loss="class-alignment", out="runs/t6",
                                memory_size=2048, max_train_samples=500))
        print(res.metrics["before"]["test_accuracy"], res.metrics["after"]["test_accuracy"])
    """
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    from .. import __version__
    from ..plotting import plot_training_curve

    out = check_out_folder(config.out, config.overwrite)
    _check_push(config)
    data = load_data(config.data, config.data_options, max_train=config.max_train_samples, seed=config.seed)
    _check_loss_data(config.loss, data)
    log(data.summary())
    torch.manual_seed(config.seed)
    model = load_model(config.model, device="cpu" if config.device == "cpu" else None)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    loss = _make_loss(config, model)
    evaluator = make_evaluator(data, "test", k=config.k, show_progress_bar=not config.quiet)

    n_train = len(data.labels("train"))
    steps_per_epoch = n_train // config.batch_size if n_train > config.batch_size else 1
    total = steps_per_epoch * config.epochs
    eval_steps = config.eval_steps
    if eval_steps is None and config.evals_per_epoch is not None:
        eval_steps = max(1, steps_per_epoch // config.evals_per_epoch)
    command = train_command(dataclasses.replace(config, eval_steps=eval_steps, evals_per_epoch=None))
    # the library's card, with the command that reproduces this run (filled from here on: metrics, losses, logs)
    model.model_card_data = SbertAlignModelCardData.from_card_data(
        model.model_card_data, command=command, sbert_align_version=__version__
    )
    model.model_card_data.train_datasets = [{"name": data.name}]
    model.model_card_data.add_tags(PROG)

    t0 = time.perf_counter()
    before = evaluator(model, epoch=0, steps=0)  # the card's training logs: step 0, before training
    pm = evaluator.primary_metric or ""
    primary = pm if pm in before else next((m for m in before if pm and m.endswith(pm)), next(iter(before)))
    log(f"before training: {primary} = {before[primary]:.4f}")

    eval_points: list[tuple[float, float]] = [(0, before[primary])]
    last_eval: dict[str, Any] = {}

    class _Record(TrainerCallback):
        def on_evaluate(self, a, state, control, metrics=None, **kw):
            key = next((m for m in (metrics or {}) if m.endswith(primary)), None)
            if key is not None:
                eval_points.append((state.global_step, float(metrics[key])))
                last_eval.clear()
                last_eval.update(
                    step=state.global_step, metrics={m.removeprefix("eval_"): v for m, v in metrics.items()}
                )
                log(f"step {state.global_step}: {primary} = {metrics[key]:.4f}")

    with tempfile.TemporaryDirectory(prefix="sbert-align-trainer-") as scratch:  # save_strategy="no": nothing kept
        targs = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.lr,
            warmup_steps=int(0.1 * total),
            eval_strategy="steps" if eval_steps else "epoch",
            eval_steps=eval_steps or None,
            save_strategy="no",
            logging_steps=max(1, min(eval_steps or total, total // 50 or 1)),
            report_to="none",
            seed=config.seed,
            disable_tqdm=config.quiet,
            use_cpu=config.device == "cpu",
            dataloader_drop_last=n_train > config.batch_size,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=targs,
            train_dataset=data.dataset("train"),
            loss=loss,
            evaluator=evaluator,
            callbacks=[_Record()],
        )
        trainer.train()
    if last_eval.get("step") == trainer.state.global_step:  # the trainer evaluated the final weights already
        after = {m: last_eval["metrics"][m] for m in before if m in last_eval["metrics"]}
    else:
        after = evaluator(model, epoch=trainer.state.epoch, steps=trainer.state.global_step)
        eval_points.append((trainer.state.global_step, after[primary]))
    train_seconds = time.perf_counter() - t0
    log(f"after training: {primary} = {after[primary]:.4f}")
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h and "step" in h]

    metrics = {
        "model": config.model,
        "data": data.name,
        "data_summary": data.summary(),
        "loss": config.loss,
        "loss_config": loss.get_config_dict() if hasattr(loss, "get_config_dict") else {},
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.lr,
        "seed": config.seed,
        "command": command,
        "sbert_align_version": __version__,
        "steps": trainer.state.global_step,
        "primary_metric": primary,
        "before": before,
        "after": after,
        "eval_curve": eval_points,
        "loss_curve": losses,
        "seconds": round(train_seconds, 1),
    }
    classifier = _fit_classifier(config, model, data, log)
    metrics["classifier"] = (
        None
        if classifier is None
        else {"folder": f"model/{CLASSIFIER_FOLDER}", "k": classifier.k, "references": classifier.num_references}
    )
    if out.is_dir() and not config.overwrite and any(out.iterdir()):  # again: another run may have written there
        raise CLIError(
            f"--out {str(out)!r} is not empty: something was written there while this run trained, so the trained "
            "model was not saved; pass --overwrite to replace what is there, or choose a new folder."
        )
    check_out_folder(out, config.overwrite)  # a file put there meanwhile
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "model") as tmp:
        model.save(str(tmp), model_name=config.push_to_hub)  # the card's usage snippet names the Hub repository
        if classifier is not None:
            classifier.save_index(tmp)
    plot_training_curve(
        losses,
        eval_points,
        out / "training_curve.png",
        eval_name=primary,
        title=config.title or f"{config.loss} on {data.name}",
    )
    atomic_write_json(out / "metrics.json", metrics)
    index = f" (with its kNN classifier in {CLASSIFIER_FOLDER}/)" if classifier is not None else ""
    log(f"saved {out / 'model'}{index}, {out / 'metrics.json'}, {out / 'training_curve.png'}")
    if config.push_to_hub:
        log(f"pushing the model to the Hugging Face Hub: {config.push_to_hub}")
        try:
            # The saved folder as it is (the library's local_model_path), so the kNN classifier and the card go too.
            url = model.push_to_hub(
                config.push_to_hub,
                private=True if config.hub_private else None,
                local_model_path=str(out / "model"),
            )
        except Exception as e:
            raise CLIError(
                f"--push-to-hub {config.push_to_hub}: the push failed ({first_line(e)}); the trained model is saved "
                f"in {out / 'model'}, push it from there (SentenceTransformer(path).push_to_hub(...))."
            ) from e
        log(f"pushed: {url}")
    return TrainResult(metrics=metrics, model=model, data=data, out=out, classifier=classifier)


def _fit_classifier(config: TrainConfig, model: Any, data: SplitSet, log: Log) -> Any:
    """The kNN classifier saved with the model: ``k`` neighbours over the train split (None for pairs, or when
    ``no_classifier``)."""
    if config.no_classifier:
        return None
    if data.is_pairs or data.label_names is None:
        log("no kNN classifier saved: it needs (text, label) data")
        return None
    from ..classifier import KNNClassifier

    log(f"fitting the kNN classifier (k={config.k}) on the {len(data.labels('train'))} train texts")
    classifier = KNNClassifier(
        model, k=config.k, show_progress_bar=not config.quiet, allow_empty_texts=data.allow_empty_texts
    )
    return classifier.fit(data.texts("train"), data.label_strings("train"))


def run_train(args: Any, log: Log = print) -> TrainResult:
    """``sbert-align train``: train with a class-alignment loss; saves ``model/``, ``metrics.json`` and
    ``training_curve.png`` under ``--out`` (a non-empty ``--out`` needs ``--overwrite``; the model folder is then
    replaced whole). On (text, label) data the model folder holds a kNN classifier fitted on the train split
    (``model/knn_classifier/``, for ``sbert-align predict``) unless ``--no-classifier``."""
    return train(TrainConfig.from_args(args), log=log)
