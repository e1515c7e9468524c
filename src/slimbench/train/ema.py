"""Exponential moving average of the weights (and a copy of the BN statistics)."""

from __future__ import annotations

import torch
from torch import nn


class WeightEMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        floats_ema, floats_now = [], []
        for key, value in self.state.items():
            if value.is_floating_point():
                floats_ema.append(value)
                floats_now.append(current[key].detach())
            else:
                value.copy_(current[key])
        torch._foreach_lerp_(floats_ema, floats_now, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)
