"""Knowledge distillation (Hinton et al. 2015), usable by every stage that trains."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard_loss``.

    The T^2 factor keeps the soft term's gradient scale independent of the temperature.
    """
    soft = F.kl_div(
        F.log_softmax(student_logits.float() / temperature, dim=1),
        F.log_softmax(teacher_logits.float() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1 - alpha) * hard_loss
