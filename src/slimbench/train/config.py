"""Training configuration: every field is a YAML key and a ``--set key=value`` override."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from slimbench.config import StrictModel
from slimbench.errors import ModelError
from slimbench.models import normalize_spec
from slimbench.sparsity.config import GradualPruningConfig

DEFAULT_MODEL = "resnet20"


class DataConfig(StrictModel):
    name: Literal["cifar10", "cifar100", "synthetic"] = "cifar10"
    dir: str | None = None
    download: bool = True
    val_size: int = Field(5000, ge=0)
    split_seed: int = 0
    train_subset: int | None = Field(None, gt=0)  # use only this many training images (seeded), for quick runs
    train_on_val: bool = False  # True: also train on the validation images (then selection falls back to "last")

    @model_validator(mode="after")
    def _default_fits_the_dataset(self) -> DataConfig:
        # 5,000 of CIFAR's 50,000 training images; the synthetic set has 512, so its default holds out 64
        if self.name == "synthetic" and "val_size" not in self.model_fields_set:
            self.val_size = 64
        return self


class OptimizerConfig(StrictModel):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    decay_norm_and_bias: bool = False  # weight decay on BN scales/shifts and biases too
    # batch-norm shifts learn this many times faster than the rest (airbench's "bias scaler", 64 there: its
    # ablation reaches 94% in 13.5 epochs with it against 18 without); 1 leaves them alone
    norm_bias_lr_scale: float = Field(1.0, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(StrictModel):
    name: Literal["constant", "step", "multistep", "cosine", "onecycle"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    step_size: int = Field(30, gt=0)  # step: epochs between decays
    milestones: list[int] = []  # multistep: epochs at which to decay
    gamma: float = Field(0.1, gt=0)
    min_lr_fraction: float = Field(0.0, ge=0, le=1)  # cosine/onecycle floor, as a fraction of lr
    pct_start: float = Field(0.25, gt=0, lt=1)  # onecycle: share of steps spent rising
    # onecycle: the shape of the rise and the fall; linear (a triangle) spends less time at the peak, which short
    # budgets favour (Li et al. 2020, "Budgeted training")
    anneal: Literal["cos", "linear"] = "cos"


class AugmentConfig(StrictModel):
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    # flip each image on every other epoch from a seeded start (airbench) instead of a fresh coin each time: every
    # image is seen both ways within two epochs, which matters when there are only a few
    alternate_flip: bool = False
    cutout: int = Field(0, ge=0)
    mixup_alpha: float = Field(0.0, ge=0)
    cutmix_alpha: float = Field(0.0, ge=0)


class DistillConfig(StrictModel):
    teacher: str  # path to a teacher artifact
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)  # weight of the distillation term


class TrainConfig(StrictModel):
    name: str | None = None
    model: dict[str, Any] = {"model": DEFAULT_MODEL}
    init_from: str | None = None  # start from this artifact's weights (fine-tuning)
    # with init_from: keep its structure, masks and lineage but draw the weights anew from `seed`, as the
    # architecture's constructor does (a pruned structure trained from scratch, Liu et al. 2019); whiten_stem and
    # zero_init_residual then apply as to a fresh model
    fresh_weights: bool = False
    data: DataConfig = DataConfig()
    epochs: int = Field(60, gt=0)
    batch_size: int = Field(128, gt=0)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    augment: AugmentConfig = AugmentConfig()
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # before each evaluation, batch norm's running statistics recomputed as a plain mean over this many augmented
    # training images instead of the moving average of the last ~20 batches (Wu and Johnson 2021, "precise BN"):
    # in low-bit QAT that average moves validation by 0.4-0.6 point within five batches, and selection would
    # pick that noise. Training itself is unchanged: it normalises with each batch's own statistics
    precise_bn: int | None = Field(None, gt=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where native, else fp32
    # auto: the layout measured fastest for the device and compile setting (BENCHMARKS section 1): on CPUs,
    # channels_last in eager mode and contiguous under torch.compile, on both CPU classes; channels_last on GPUs
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    device: str = "auto"
    threads: int | None = Field(None, gt=0)
    seed: int = 0
    select: Literal["best_val", "last"] = "best_val"
    early_stop_patience: int | None = Field(None, gt=0)
    report_test_each_epoch: bool = True  # logged for the report only, never used for selection
    distill: DistillConfig | None = None
    # start every residual branch at zero (the last norm of each block, Goyal et al. 2017): each block begins as
    # the identity, so a short run can take a high learning rate from its first steps (fresh models only)
    zero_init_residual: bool = False
    whiten_stem: bool = False  # start the first convolution as a whitening of training patches (fresh models only)
    bn_l1: float = Field(0.0, ge=0)  # network slimming: L1 pull on batch-norm scales, for bn_scale pruning later
    gradual_pruning: GradualPruningConfig | None = None  # unstructured sparsity ramped up while training

    @model_validator(mode="after")
    def _precise_bn_of_the_trained_weights(self) -> TrainConfig:
        if self.precise_bn and self.ema_decay:
            raise ValueError("precise_bn re-estimates the statistics of the trained weights; with ema_decay the "
                             "averaged weights are the ones evaluated: use one or the other")
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, spec: dict[str, Any]) -> dict[str, Any]:
        # `model: {width: 0.5}` (or `--set model.width=0.5`) adjusts the default model. Defaults are
        # checked here but not filled in, so that an unset num_classes follows the dataset.
        spec = {"model": DEFAULT_MODEL, **spec}
        try:
            normalize_spec(spec)
            return spec
        except ModelError as exc:
            raise ValueError(str(exc)) from None
