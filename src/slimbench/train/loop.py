"""The training loop: tensor-resident data, whole-batch augmentation, channels_last, bf16 autocast.

Every epoch ends with an atomic ``last.pt`` holding the model artifact plus everything needed to
resume exactly (optimiser, EMA, augmentation generator, RNG, history); ``--resume`` continues from it
and produces the same numbers the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.artifact import (
    Artifact,
    artifact_from_payload,
    atomic_write,
    code_version,
    config_hash,
    inherited_lineage,
    lineage_step,
    load_artifact,
    load_model,
    now_iso,
    safe_torch_load,
    save_artifact,
)
from slimbench.config import dump_yaml, read_yaml, validate
from slimbench.data import BatchAugmenter, ImageDataset, load_dataset, normalize, split_dataset
from slimbench.errors import CheckpointError, ConfigError, TrainingError
from slimbench.hardware import warn_if_busy
from slimbench.measure.accuracy import (
    Evaluation,
    autocast,
    describe_device,
    evaluate,
    full_fp32,
    resolve_device,
    resolve_precision,
)
from slimbench.models import build_model, count_parameters
from slimbench.models.common import reinitialize
from slimbench.models.lowbit import load_state_in_place, snap_weights
from slimbench.models.norms import batch_norms, update_batch_norms
from slimbench.runs import DB_NAME, ResultsStore, make_run_dir
from slimbench.sparsity.select import select_layers
from slimbench.sparsity.unstructured import (
    MaskKeeper,
    apply_masks_in_place,
    compute_masks,
    pruning_masks,
    sparsity_of,
)
from slimbench.train.config import TrainConfig
from slimbench.train.distill import distillation_loss
from slimbench.train.distributed import check_batch, init_distributed
from slimbench.train.ema import WeightEMA
from slimbench.train.schedule import build_optimizer, lr_factor, set_lr
from slimbench.train.whiten import whiten_first_conv

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


class TrainingInterrupted(TrainingError):
    """Ctrl-C: the last complete epoch is on disk and ``--resume`` continues from it.

    A pipeline that drives the trainer (prune, QAT, a study) resumes by running itself again, not by
    ``train --resume``: it re-raises with :meth:`continue_with` and its own instruction.
    """

    def __init__(self, message: str, run_dir: Path | None = None, epochs_done: int = 0) -> None:
        super().__init__(message)
        self.run_dir = run_dir
        self.epochs_done = epochs_done

    def continue_with(self, instruction: str) -> TrainingInterrupted:
        """The same interruption, telling the user ``instruction`` instead of the trainer's own hint."""
        if not self.epochs_done:
            return TrainingInterrupted(f"interrupted before the first epoch was saved; {instruction} to start over",
                                       self.run_dir, 0)
        return TrainingInterrupted(f"interrupted; {self.epochs_done} epoch(s) are saved in {self.run_dir}: "
                                   f"{instruction} to continue from there", self.run_dir, self.epochs_done)


def train(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    dataset: ImageDataset | None = None,
    runs_root: str | Path | None = None,
    store: str | Path | None = None,
) -> TrainResult:
    """Train ``config.model``; writes ``model.pt``, ``best.pt``, ``last.pt``, log, metrics and plots.

    ``run_dir`` defaults to a fresh ``runs/<name>/``; an existing run is never overwritten.
    """
    dist, _ = init_distributed(resolve_device(config.device))
    path = None
    if dist.main:  # under torchrun, rank 0 chooses the run directory and tells the others
        if run_dir is not None:
            path = Path(run_dir)
            if (path / "last.pt").exists():
                raise ConfigError(f"{path} already holds a run: resume it, or choose another name")
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = make_run_dir(config.name, config.model["model"], runs_root)
        atomic_write(path / "config.yaml", dump_yaml(config).encode())
    path = Path(dist.broadcast(str(path)))
    return _Trainer(config, path, dataset, store).run(resume=False, progress=progress, on_epoch=on_epoch)


def resume_training(
    run_dir: str | Path,
    epochs: int | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    dataset: ImageDataset | None = None,
    store: str | Path | None = None,
    teacher: str | Path | None = None,
) -> TrainResult:
    """Continue a run from its ``last.pt`` with its saved config; only the number of epochs may change.

    ``teacher``: the distillation teacher's file where it is now, for a run directory that was moved from where
    it was made (its config names the old path). It is written into the run's config as an absolute path.
    """
    path = Path(run_dir)
    if not (path / "last.pt").exists():
        raise CheckpointError(f"{path}: no last.pt to resume from")
    config = validate(TrainConfig, read_yaml(path / "config.yaml"), str(path / "config.yaml"))
    changes: dict[str, Any] = {}
    if teacher is not None and config.distill is None:
        raise ConfigError(f"{path}: --teacher names a distillation teacher, and this run does not distil")
    if config.distill is not None:
        named = teacher is not None
        chosen = Path(teacher).resolve() if named else Path(config.distill.teacher)
        if not chosen.exists():
            raise CheckpointError(f"{path}: the teacher named with --teacher, {teacher}, does not exist" if named else
                                  f"{path}: its distillation teacher {config.distill.teacher} does not exist; name the "
                                  f"file where it is now (`slimbench train --resume {path} --teacher PATH`)")
        if str(chosen) != config.distill.teacher:
            # written back so that the next resume (and the interruption hint) need no --teacher again
            changes["distill"] = config.distill.model_copy(update={"teacher": str(chosen)})
    if epochs is not None and epochs != config.epochs:
        changes["epochs"] = epochs
    if changes:
        config = config.model_copy(update=changes)
        atomic_write(path / "config.yaml", dump_yaml(config).encode())
    return _Trainer(config, path, dataset, store, resume_from=path / "last.pt").run(
        resume=True, progress=progress, on_epoch=on_epoch)


def zero_residual_branches(model: nn.Module) -> int:
    """Zero the scale of the norm that ends each residual branch (blocks declare it as ``residual_end``)."""
    blocks = [m for m in model.modules() if isinstance(getattr(m, "residual_end", None), str)]
    if not blocks:
        raise ConfigError("zero_init_residual: this model declares no residual blocks (residual_end)")
    with torch.no_grad():
        for block in blocks:
            getattr(block, block.residual_end).weight.zero_()
    return len(blocks)


def preferred_channels_last(device: torch.device, compiled: bool) -> bool:
    """The layout that trained fastest, measured with benchmarks/train_throughput.py: compiled graphs run
    contiguous faster on the CPUs of both classes (AVX2: 338 vs 284 img/s; AVX-512-BF16: see BENCHMARKS
    section 1), eager ones channels_last; GPUs prefer channels_last."""
    return device.type != "cpu" or not compiled


def eager_channels_last(device: torch.device, model: nn.Module) -> bool:
    """Whether a model that runs eager here (a distillation teacher, an evaluation pass) runs channels_last."""
    return preferred_channels_last(device, compiled=False) and channels_last_is_safe(model)


def channels_last_is_safe(model: nn.Module) -> bool:
    """False for models with inner convolutions of 2..7 input channels (e.g. ResNet-20 at width 0.25).

    On AVX2 CPUs, torch 2.13's channels_last backward of such convolutions (seen with 1x1 stride-2
    projections) corrupts the heap and crashes the process; contiguous memory is safe there. The first
    convolution, the one that reads the 3-channel image, is exempt: counting it turned channels_last off for
    every model, and models with such a stem train in channels_last without trouble (ResNet-20, DenseNet-121
    and ResNet-34 runs in BENCHMARKS.md).
    """
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return not any(1 < conv.in_channels < 8 for conv in convolutions[1:])


def describe_spans(history: list[dict[str, Any]], key: str) -> str:
    """What every epoch recorded under ``key`` (its memory layout, its device): one value, or runs of epochs
    when a resumed run changed it (a GPU run finished on a CPU)."""
    spans: list[list[Any]] = []  # [value, first epoch, last epoch]
    for record in history:
        layout = record.get(key, "unrecorded")
        if spans and spans[-1][0] == layout:
            spans[-1][2] = record["epoch"]
        else:
            spans.append([layout, record["epoch"], record["epoch"]])
    if len(spans) <= 1:
        return spans[0][0] if spans else "none (no epoch trained)"
    return ", ".join(f"{layout} (epochs {first}-{last})" if first != last else f"{layout} (epoch {first})"
                     for layout, first, last in spans)


def is_better_epoch(record: dict[str, Any], best_val: float, best_val_loss: float) -> bool:
    """Higher validation accuracy wins; an equal one wins with a lower validation loss. 5,000 validation images
    tie often enough (BENCHMARKS section 24) that the rule for a tie has to be fixed before the runs."""
    if record["val_acc"] != best_val:
        return record["val_acc"] > best_val
    return record["val_loss"] < best_val_loss


class _Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path, dataset: ImageDataset | None,
                 store: str | Path | None = None, resume_from: Path | None = None) -> None:
        self.cfg = config
        self.run_dir = run_dir
        # the results store: beside the run directory unless a pipeline (prune, study) keeps one of its own
        self.store_path = Path(store) if store else run_dir.parent / DB_NAME
        self.dist, self.device = init_distributed(resolve_device(config.device))
        self.device_label = describe_device(self.device)
        self.local_batch = check_batch(config.batch_size, self.dist)
        self.precision = resolve_precision(config.precision, self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision fp16 trains only on CUDA (it needs a grad scaler); use bf16 on this device")
        self.dataset = dataset if dataset is not None else load_dataset(
            config.data.name, config.data.dir, download=config.data.download
        )
        self.splits = split_dataset(self.dataset, config.data.val_size, config.data.split_seed)
        train_idx = self.splits.train_idx
        if config.data.train_on_val:
            train_idx = torch.cat([train_idx, self.splits.val_idx])
        if config.data.train_subset and config.data.train_subset < len(train_idx):
            pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(config.data.split_seed))
            train_idx = train_idx[pick[: config.data.train_subset]].sort().values
        self.val_x = self.dataset.train_x[self.splits.val_idx]
        self.val_y = self.dataset.train_y[self.splits.val_idx]
        if len(train_idx) < config.batch_size:
            raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(train_idx)} training images")
        self.steps_per_epoch = len(train_idx) // config.batch_size  # drop the ragged tail: fixed shapes

        spec = dict(config.model)
        # More outputs than classes is wasteful but trains (the brief's DenseNet-121 kept ImageNet's 1000 outputs);
        # fewer cannot.
        if spec.get("num_classes", self.dataset.num_classes) < self.dataset.num_classes:
            raise ConfigError(
                f"model.num_classes is {spec['num_classes']} but {self.dataset.name} has {self.dataset.num_classes} classes"
            )
        spec.setdefault("num_classes", self.dataset.num_classes)
        self.spec = spec
        self.parent: str | None = None
        self.lineage: list[dict[str, Any]] = []
        self.structure: dict[str, Any] | None = None
        self.quant: dict[str, Any] | None = None
        masks: dict[str, torch.Tensor] = {}
        if config.init_from:
            # A resumed run rebuilds its model from its own last.pt, which carries the parent's structure,
            # quantization and lineage: it resumes even where the parent file is gone or elsewhere (a study
            # directory copied back from another machine names paths of that machine).
            model, parent = load_model(resume_from or config.init_from)
            if parent.spec["model"] != spec["model"]:
                raise ConfigError(f"init_from {config.init_from} is a {parent.spec['model']}, not a {spec['model']}")
            self.spec = parent.spec
            self.structure, self.quant = parent.structure, parent.quant
            if resume_from is None:
                self.parent, self.lineage = parent.digest, list(parent.lineage)
            else:  # last.pt's lineage ends with the steps this run appends (gradual pruning adds its own)
                self.lineage, self.parent = inherited_lineage(parent.lineage)
            # Weights that pruning removed stay zero while fine-tuning: the parent's recorded masks (for an
            # artifact from before they were recorded, the zeros of the tensors its lineage names as pruned).
            masks = pruning_masks(parent.state, self.lineage, parent.masks)
            if config.fresh_weights and resume_from is None:
                if self.quant:
                    raise ConfigError(f"fresh_weights: {config.init_from} is quantized ({self.quant.get('mode')}); "
                                      "start from its float parent")
                torch.manual_seed(config.seed)
                self._fresh_start(reinitialize(model), train_idx)
        else:
            if config.fresh_weights:  # a study's train stage fills init_from in, so the config alone cannot tell
                raise ConfigError("fresh_weights keeps the structure of init_from: name the model to take it from")
            torch.manual_seed(config.seed)
            model = build_model(spec)
            self._fresh_start(model, train_idx)
        wanted = preferred_channels_last(self.device, config.compile) if config.channels_last == "auto" \
            else config.channels_last
        self.channels_last = wanted and channels_last_is_safe(model)
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=memory)
        self.masks = MaskKeeper(self.model, masks) if masks else None
        self.eval_channels_last = eager_channels_last(self.device, model)
        self.bn_scales = [m.weight for m in self.model.modules()
                          if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
        self.gradual = config.gradual_pruning
        self.gradual_layers: dict[str, nn.Module] = {}
        if self.gradual:
            if config.ema_decay:
                raise ConfigError("gradual_pruning and ema_decay do not mix: averaged weights would not stay sparse")
            self.original_params = count_parameters(build_model(self.spec))
            self.gradual_layers = select_layers(self.model, self.gradual.as_prune_config(self.gradual.final_sparsity))
            self.sparse_names = sorted({*masks, *(f"{name}.weight" for name in self.gradual_layers)})
            self.nonzero_at_start = sum(int(torch.count_nonzero(p)) for p in self.model.parameters())
        # uint8 images live on the training device for the whole run: a batch is one gather away.
        self.train_x = self.dataset.train_x[train_idx].to(self.device).contiguous(memory_format=memory)
        self.train_y = self.dataset.train_y[train_idx].to(self.device)
        self.step_model: nn.Module = self.model
        if self.dist.active:  # gradients averaged across processes; batch-norm buffers follow rank 0
            self.step_model = nn.parallel.DistributedDataParallel(self.model)
        if config.compile:
            self.step_model = torch.compile(self.step_model)
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.ema = WeightEMA(self.model, config.ema_decay) if config.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.teacher: nn.Module | None = None
        self.teacher_channels_last = False
        if config.distill:
            teacher, _ = load_model(config.distill.teacher)
            # The teacher runs eager whatever the student does, so it takes the eager layout: airnet-wide's
            # forward pass is 1.66x faster channels_last than contiguous on the AVX-512-BF16 class
            # (benchmarks/forward_layout.py), a fifth of a distilled epoch under a compiled ResNet-20.
            self.teacher_channels_last = eager_channels_last(self.device, teacher)
            teacher_memory = torch.channels_last if self.teacher_channels_last else torch.contiguous_format
            self.teacher = teacher.to(self.device, memory_format=teacher_memory).eval()
            self._check_teacher(config.distill.teacher)
        self.after_backward, self.after_step = self._step_hooks()
        self.augment = BatchAugmenter(
            crop_padding=config.augment.crop_padding, flip=config.augment.flip, cutout_size=config.augment.cutout,
            mixup_alpha=config.augment.mixup_alpha, cutmix_alpha=config.augment.cutmix_alpha,
            num_classes=self.dataset.num_classes, channels_last=self.channels_last,
        )
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        # alternating flips: each image's orientation in even epochs, fixed by the seed (odd epochs mirror it)
        self.flip_start = (torch.rand(len(self.train_x), generator=torch.Generator().manual_seed(config.seed + 1)) < 0.5
                           ).to(self.device) if config.augment.alternate_flip else None
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.best_val = -1.0
        self.best_val_loss = float("inf")
        self.best_epoch = -1
        self.stale_epochs = 0
        self.train_seconds = 0.0

    # ---- persistence -------------------------------------------------------------------------
    def _artifact(self, state: dict[str, torch.Tensor] | None, metrics: dict[str, Any]) -> Artifact:
        step = lineage_step("train", self.cfg.model_dump(mode="json"), self.parent, metrics)
        steps = [self._gradual_step(), step] if self.gradual else [step]
        masks = {name: mask.detach().cpu() for name, mask in self.masks.masks.items()} if self.masks else None
        artifact = Artifact.from_model(self.spec, self.model, structure=self.structure, quant=self.quant,
                                       lineage=[*self.lineage, *steps], metrics=metrics, masks=masks)
        if state is not None:
            artifact.state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        return artifact

    def _weights_for_eval(self) -> dict[str, torch.Tensor] | None:
        return self.ema.state_dict() if self.ema else None

    def _save_last(self, epoch: int) -> None:
        resume = {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "generator": self.gen.get_state(),
            "generator_device": self.gen.device.type,
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
            "best_val": self.best_val,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale_epochs,
            "train_seconds": self.train_seconds,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            # gradual pruning records what it removed against the model it started from, not a resumed one
            "nonzero_at_start": self.nonzero_at_start if self.gradual else None,
        }
        save_artifact(self._artifact(None, self.history[-1] if self.history else {}), self.run_dir / "last.pt",
                      extra={"resume": resume})

    def _load_last(self) -> None:
        path = self.run_dir / "last.pt"
        payload = safe_torch_load(path)
        artifact = artifact_from_payload(payload, path)
        resume = payload.get("resume")
        if not isinstance(resume, dict):
            raise CheckpointError(f"{path}: has no resume state")
        load_state_in_place(self.model, artifact.state)
        self.optimizer.load_state_dict(resume["optimizer"])
        if self.ema and resume["ema"] is not None:
            self.ema.load_state_dict(resume["ema"])
        if self.scaler and resume.get("scaler"):
            self.scaler.load_state_dict(resume["scaler"])
        if self.gradual and resume.get("nonzero_at_start") is not None:
            self.nonzero_at_start = int(resume["nonzero_at_start"])
        generator = resume["generator"]
        if resume.get("generator_device", self.gen.device.type) == self.gen.device.type \
                and generator.numel() == self.gen.get_state().numel():
            self.gen.set_state(generator)
        else:  # saved on another kind of device (a GPU run resumed on a CPU): its state does not fit this
            # generator, so augmentation continues from a fresh stream; across devices, exactness was never on offer
            self.gen.manual_seed(self.cfg.seed + int(resume["epoch"]))
        torch.set_rng_state(resume["torch_rng"])
        self.history = json.loads(resume["history"])
        self.start_epoch = int(resume["epoch"]) + 1
        self.best_val = float(resume["best_val"])
        self.best_epoch = int(resume["best_epoch"])
        # checkpoints from before the tie-break read the chosen epoch's loss back from the log
        chosen = self.history[self.best_epoch - 1] if 0 < self.best_epoch <= len(self.history) else {}
        self.best_val_loss = float(resume.get("best_val_loss", chosen.get("val_loss", float("inf"))))
        self.stale_epochs = int(resume["stale_epochs"])
        self.train_seconds = float(resume["train_seconds"])

    def _raise_sparsity(self, epoch: int) -> float:
        """Zero the weights the ramp asks for at this epoch; earlier zeros rank lowest, so the mask only grows."""
        assert self.gradual is not None
        target = self.gradual.sparsity_at(epoch, self.cfg.epochs)
        cfg = self.gradual.as_prune_config(max(target, 1e-9))
        masks = compute_masks(self.gradual_layers, cfg, target)
        apply_masks_in_place(self.gradual_layers, masks)
        kept = dict(self.masks.masks) if self.masks else {}
        for name, mask in masks.items():
            param = f"{name}.weight"
            kept[param] = mask.to(torch.bool) & kept[param] if param in kept else mask.to(torch.bool)
        self.masks = MaskKeeper(self.model, kept)
        return sparsity_of(self.gradual_layers).sparsity

    def _gradual_step(self) -> dict[str, Any]:
        """The lineage record of gradual pruning, so that `score` reads Pu as for any other pruning."""
        assert self.gradual is not None
        report = sparsity_of(self.gradual_layers)
        nonzero = sum(int(torch.count_nonzero(p)) for p in self.model.parameters())
        total = sum(p.numel() for p in self.model.parameters())
        original = self.original_params
        settings = {"kind": "unstructured", "schedule": "gradual", **self.gradual.model_dump(mode="json")}
        return lineage_step("prune", settings, self.parent, {
            "kind": "unstructured", "sparsity": report.sparsity, "per_layer_sparsity": report.per_layer,
            "params_before": total, "params_after": total, "original_params": original,
            "unstructured_ratio": max(self.nonzero_at_start - nonzero, 0) / original, "structured_ratio": 0.0,
            "sparse_params": self.sparse_names})

    def _teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if self.teacher_channels_last else torch.contiguous_format
        return x.contiguous(memory_format=layout)

    def _fresh_start(self, model: nn.Module, train_idx: torch.Tensor) -> None:
        config = self.cfg
        if config.zero_init_residual:
            zero_residual_branches(model)
        if config.whiten_stem:  # from the training images only: validation and test stay unseen
            pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(config.seed))
            whiten_first_conv(model, self.dataset.train_x[train_idx[pick[:5000]]])

    @torch.no_grad()
    def _check_teacher(self, path: str) -> None:
        """A teacher must take these images and score these classes; said before the first step, not in it."""
        probe = normalize(self.dataset.train_x[:2].to(self.device), channels_last=self.channels_last)
        try:
            with autocast(self.device, self.precision):
                logits = self.teacher(self._teacher_input(probe))
        except RuntimeError as exc:
            detail = str(exc).strip().splitlines()[0]
            raise ConfigError(f"distill.teacher {path} cannot take {tuple(probe.shape[1:])} images: {detail}") from None
        if logits.shape != (2, self.dataset.num_classes):
            raise ConfigError(f"distill.teacher {path} scores {logits.shape[-1]} classes; "
                              f"{self.dataset.name} has {self.dataset.num_classes}")

    # ---- the optional parts of a training step, as small hooks -------------------------------------
    def loss(self, logits: torch.Tensor, target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (label smoothing, soft targets when mixing), plus distillation when a teacher is set."""
        loss = F.cross_entropy(logits, target, label_smoothing=self.cfg.label_smoothing)
        if self.teacher is None or self.cfg.distill is None:
            return loss
        with torch.no_grad():
            teacher_logits = self.teacher(self._teacher_input(x))
        return distillation_loss(logits, teacher_logits, loss, self.cfg.distill.temperature, self.cfg.distill.alpha)

    def loss_name(self) -> str:
        """What :meth:`loss` minimises, in words, for the train curve's legend."""
        hard = "cross-entropy" + (f" with label smoothing {self.cfg.label_smoothing:g}" if self.cfg.label_smoothing else "")
        if self.cfg.distill is None:
            return hard
        return f"{self.cfg.distill.alpha:g} x distillation + {1 - self.cfg.distill.alpha:g} x {hard}"

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler:  # fp16 on CUDA: scaled, then unscaled so that gradient hooks see true values
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()

    def optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _step_hooks(self) -> tuple[list[Callable[[], None]], list[Callable[[], None]]]:
        """What runs after backward (on gradients) and after the optimiser step (on weights), as configured."""
        cfg, after_backward, after_step = self.cfg, [], []
        if cfg.bn_l1:
            def pull_bn_scales() -> None:  # subgradient of bn_l1 * sum|gamma| (Liu et al. 2017, network slimming)
                for gamma in self.bn_scales:
                    gamma.grad.add_(torch.sign(gamma.detach()), alpha=cfg.bn_l1)

            after_backward.append(pull_bn_scales)
        if cfg.grad_clip:
            after_backward.append(lambda: nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        if self.masks is not None or self.gradual:  # looked up each step: gradual pruning replaces them as it goes
            after_step.append(lambda: self.masks.apply() if self.masks else None)
        if self.ema:
            after_step.append(lambda: self.ema.update(self.model))  # type: ignore[union-attr]
        return after_backward, after_step

    # ---- the hot path --------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, advance: Callable[[int, float, float], None]) -> dict[str, Any]:
        cfg = self.cfg
        model, optimizer = self.step_model, self.optimizer
        self.model.train()
        order = torch.randperm(len(self.train_x), generator=self.gen, device=self.device)  # the same on every rank
        augment_gen = self.gen
        if self.dist.active:  # each process its own augmentation draws, reproducible per epoch
            augment_gen = torch.Generator(device=self.device).manual_seed(
                self.cfg.seed * 1_000_003 + epoch * 1009 + self.dist.rank)
        first = self.dist.rank * self.local_batch
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        base_lr = cfg.optimizer.lr
        started = time.perf_counter()
        for i in range(self.steps_per_epoch):
            step = epoch * self.steps_per_epoch + i
            set_lr(optimizer, base_lr * lr_factor(cfg.schedule, step, self.steps_per_epoch, cfg.epochs))
            idx = order[i * cfg.batch_size + first:i * cfg.batch_size + first + self.local_batch]
            flip = None if self.flip_start is None else self.flip_start[idx] ^ bool(epoch % 2)
            x, target = self.augment(self.train_x[idx], self.train_y[idx], augment_gen, flip)
            with autocast(self.device, self.precision):
                logits = model(x)
                loss = self.loss(logits, target, x)
            optimizer.zero_grad(set_to_none=True)
            self.backward(loss)
            for hook in self.after_backward:  # gradient edits: bn_l1 pull, clipping
                hook()
            self.optimizer_step()
            for hook in self.after_step:  # weight edits: pruning masks, the moving average
                hook()
            loss_sum += loss.detach()
            hard = target if target.ndim == 1 else target.argmax(1)
            correct += (logits.argmax(1) == hard).sum()
            seen += len(idx)
            if i % 50 == 49 or i == self.steps_per_epoch - 1:
                mean_loss = float(loss_sum) / (i + 1)
                if not math.isfinite(mean_loss):
                    raise TrainingError(
                        f"loss became {mean_loss} at epoch {epoch + 1}, step {i + 1}: lower the learning rate "
                        f"(now {base_lr}) or add grad_clip"
                    )
                advance(i + 1, mean_loss, float(correct) / seen)
        seconds = time.perf_counter() - started
        return {
            "train_loss": float(loss_sum) / self.steps_per_epoch,
            "train_acc": float(correct) / seen,
            "images_per_s": seen * self.dist.world / seconds,
            "epoch_s": seconds,
            "lr": optimizer.param_groups[0]["lr"],
        }

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        result = self._evaluation(x, y, self._weights_for_eval())
        return result.loss, result.accuracy

    def _evaluation(self, x: torch.Tensor, y: torch.Tensor, state: dict[str, torch.Tensor] | None) -> Evaluation:
        """The model (with ``state``'s weights when given) on ``x``, in its stored precision. Evaluation runs
        eager, so a compiled model that trains contiguous is evaluated as a channels_last copy: eager fp32
        convolutions run faster in that layout (benchmarks/forward_layout.py --precision stored)."""
        classes = self.dataset.num_classes
        if self.eval_channels_last and not self.channels_last:
            model = copy.deepcopy(self.model)
            if state is not None:
                load_state_in_place(model, state)
            return evaluate(model.to(memory_format=torch.channels_last), x, y, classes, channels_last=True)
        if state is None:
            return evaluate(self.model, x, y, classes, channels_last=self.channels_last)
        backup = {k: v.clone() for k, v in self.model.state_dict().items()}
        load_state_in_place(self.model, state)
        try:
            return evaluate(self.model, x, y, classes, channels_last=self.channels_last)
        finally:
            load_state_in_place(self.model, backup)

    @torch.no_grad()
    def _reestimate_norms(self, epoch: int) -> None:
        """``precise_bn``: every batch norm's running statistics as the plain mean over seeded augmented training
        images, the rest of the model as it is evaluated, in fp32. A generator of its own keeps the training
        stream the same with the option as without it."""
        if not batch_norms(self.model):
            return
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 2_000_029 + epoch)  # not an augmentation seed
        pick = torch.randperm(len(self.train_x), generator=gen, device=self.device)[:self.cfg.precise_bn]
        augmented = (self.augment(self.train_x[batch], self.train_y[batch], gen, None)[0]
                     for batch in pick.split(self.cfg.batch_size))
        with full_fp32():
            update_batch_norms(self.model, augmented, restart=True)

    # ---- driver --------------------------------------------------------------------------------
    def run(self, resume: bool, progress: bool, on_epoch: EpochCallback | None) -> TrainResult:
        from slimbench.train.plots import plot_history
        from slimbench.train.progress import TrainProgress  # rich is only needed when training

        if resume:
            self._load_last()
        self.saved_epoch = self.start_epoch
        if self.device.type == "cpu" and self.dist.main:  # once everything is set up: an error comes alone
            warn_if_busy(torch.get_num_threads(), f"training {self.cfg.name or self.run_dir.name}")
        started_iso = now_iso()
        has_val = len(self.val_x) > 0 and not self.cfg.data.train_on_val
        log_path = self.run_dir / "log.jsonl"
        try:
            with TrainProgress(self.cfg.epochs, self.steps_per_epoch, self.cfg.batch_size,
                               enabled=progress and self.dist.main) as bar:
                for epoch in range(self.start_epoch, self.cfg.epochs):
                    bar.start_epoch(epoch)
                    record: dict[str, Any] = {"epoch": epoch + 1}
                    if resume and epoch == self.start_epoch:  # the log says where a run was picked up again
                        record["resumed"] = True
                    if self.gradual:
                        record["sparsity"] = self._raise_sparsity(epoch)
                    record.update(self._train_epoch(epoch, bar.advance))
                    record["memory_format"] = "channels_last" if self.channels_last else "contiguous"
                    record["device"], record["precision"] = self.device_label, self.precision
                    self.train_seconds += record["epoch_s"]
                    evaluated = time.perf_counter()
                    if self.cfg.precise_bn:
                        self._reestimate_norms(epoch)
                    if has_val:
                        record["val_loss"], record["val_acc"] = self._evaluate(self.val_x, self.val_y)
                    if self.cfg.report_test_each_epoch:
                        record["test_loss"], record["test_acc"] = self._evaluate(self.dataset.test_x, self.dataset.test_y)
                    record["eval_s"] = time.perf_counter() - evaluated  # epoch_s counts training steps only
                    record["elapsed_s"] = self.train_seconds
                    self.history.append(record)
                    # with gradual pruning only epochs at the final sparsity may be selected
                    final = not self.gradual or epoch + 1 >= self.gradual.end(self.cfg.epochs)
                    improved = has_val and final and is_better_epoch(record, self.best_val, self.best_val_loss)
                    if improved:
                        self.best_val, self.best_val_loss = record["val_acc"], record["val_loss"]
                        self.best_epoch, self.stale_epochs = epoch + 1, 0
                        if self.dist.main:
                            save_artifact(self._artifact(self._weights_for_eval(), record), self.run_dir / "best.pt")
                    else:
                        self.stale_epochs += 1
                    if self.dist.main:
                        self._save_last(epoch)  # before the log line: a logged epoch is always resumable
                        with open(log_path, "a") as log:
                            log.write(json.dumps(record) + "\n")
                    self.saved_epoch = epoch + 1
                    bar.end_epoch(record)
                    if on_epoch:
                        on_epoch(record)
                    patience = self.cfg.early_stop_patience
                    if has_val and patience and self.stale_epochs >= patience:
                        bar.note(f"early stop: validation accuracy has not improved for {patience} epochs")
                        break
        except KeyboardInterrupt:
            done = self.saved_epoch
            self._record("interrupted", started_iso, {"epochs_done": done})
            if not done:
                raise TrainingInterrupted("interrupted before the first epoch was saved; nothing to resume") from None
            raise TrainingInterrupted(
                f"interrupted; epoch {done} is saved in {self.run_dir / 'last.pt'}: resume with "
                f"`slimbench train --resume {self.run_dir}`", self.run_dir, done,
            ) from None
        except TrainingError as exc:
            self._record("failed", started_iso, {"error": str(exc)})
            raise
        return self._finish(started_iso, has_val, plot_history)

    def _finish(self, started_iso: str, has_val: bool, plot_history: Callable[..., None]) -> TrainResult:
        if self.dist.active:  # rank 0 has written best.pt before the others read it
            torch.distributed.barrier()
        use_best = self.cfg.select == "best_val" and has_val and (self.run_dir / "best.pt").exists()
        if use_best:
            chosen = load_artifact(self.run_dir / "best.pt")
            selected_epoch = self.best_epoch
            load_state_in_place(self.model, chosen.state)
        else:
            selected_epoch = self.history[-1]["epoch"]
            if self.ema:
                load_state_in_place(self.model, self.ema.state_dict())
        final_test = self._evaluation(self.dataset.test_x, self.dataset.test_y, None)
        metrics: dict[str, Any] = {
            "selection": "best validation accuracy, ties to the lower validation loss" if use_best else "last epoch",
            "selected_epoch": selected_epoch,
            "val_acc": self.history[selected_epoch - 1].get("val_acc") if has_val else None,
            "test_acc": final_test.accuracy,
            "test_loss": final_test.loss,
            "test_per_class": final_test.per_class,
            "params": count_parameters(self.model),
            "epochs_run": self.history[-1]["epoch"],
            "train_seconds": self.train_seconds,
            "train_images": len(self.train_x),
            "val_images": len(self.val_x) if has_val else 0,
            "mean_images_per_s": sum(h["images_per_s"] for h in self.history) / len(self.history),
            "precision": describe_spans(self.history, "precision"),
            "memory_format": describe_spans(self.history, "memory_format"),
            "device": describe_spans(self.history, "device"),
            "threads": torch.get_num_threads(),
            "processes": self.dist.world,
        }
        reached = [h for h in self.history if h.get("test_acc", 0) >= 0.9]
        if reached:
            metrics["test_90_epoch"] = reached[0]["epoch"]
            metrics["test_90_elapsed_s"] = reached[0]["elapsed_s"]
        model_path = self.run_dir / "model.pt"
        if self.dist.main:
            final = self._artifact(None, metrics)
            if (self.quant or {}).get("mode") == "qat":  # stored as it computes: each weight on its grid level
                final.state = {k: v.cpu() for k, v in snap_weights(self.model).items()}
            save_artifact(final, model_path)
            atomic_write(self.run_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
            plot_history(self.history, self.run_dir / "curves.png",
                         title=f"{self.spec['model']} on {self.dataset.name}", train_objective=self.loss_name())
            self._record("done", started_iso, metrics)
        return TrainResult(run_dir=self.run_dir, model_path=model_path, metrics=metrics, history=self.history)

    def _record(self, status: str, started: str, metrics: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        cfg = self.cfg.model_dump(mode="json")
        ResultsStore(self.store_path).record(
            name=self.run_dir.name, command="train", status=status, started=started, finished=now_iso(),
            run_dir=str(self.run_dir), model=self.spec["model"], config_hash=config_hash(cfg),
            git_commit=code_version()["git_commit"], config=cfg, metrics=metrics, wall_s=self.train_seconds,
        )
