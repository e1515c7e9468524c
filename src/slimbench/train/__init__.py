"""Training: the loop, optimisers and schedules, checkpoint and resume, EMA, distillation."""

from slimbench.train.config import (
    AugmentConfig,
    DataConfig,
    DistillConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from slimbench.train.distill import distillation_loss
from slimbench.train.loop import TrainingInterrupted, TrainResult, resume_training, train

__all__ = [
    "AugmentConfig", "DataConfig", "DistillConfig", "OptimizerConfig", "ScheduleConfig", "TrainConfig",
    "TrainResult", "TrainingInterrupted", "distillation_loss", "resume_training", "train",
]
