"""Stages that reshape the distribution rather than cut it: quadratic ("smoothing") sampling as
text-generation-webui and KoboldCpp write it, and llama.cpp's adaptive-p, which maps each probability
to a logit peaked at a target that moves with the row's running average."""

from __future__ import annotations

import torch

from .stage import NEG_INF, Stage, Step

# llama.cpp's adaptive-p constants: how wide the favoured band around the target is, the logit at the
# target, and how fast logits fall off away from it
ADAPTIVE_WIDTH = 0.3
ADAPTIVE_PEAK = 5.0
ADAPTIVE_SHARPNESS = 10.0


class Guidance(Stage):
    """Classifier-free guidance as HF's UnbatchedClassifierFreeGuidanceLogitsProcessor: on log-probabilities,
    scale x (conditional - unconditional) + unconditional, the unconditional ones from the row's guidance row
    (its negative prompt and the same tokens; Step.uncond, set by the decode loop each step). Without them (a
    branch's forced tokens rescored on their own) the stage leaves the logits as they are."""

    name, effect = "cfg", "reshape"
    guidance_scale: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        if step.uncond is None:
            return x
        negative = torch.log_softmax(step.uncond, dim=-1)
        return self.guidance_scale * (torch.log_softmax(x, dim=-1) - negative) + negative


class Smoothing(Stage):
    """Quadratic sampling: with d = logit - max, the logit becomes max - k f d^2 + c f d^3, where
    k = (3 - curve) / 2 and c = (curve - 1) / 2 (curve 1: quadratic, 3: cubic). Removed tokens stay removed."""

    name, effect = "smoothing", "reshape"
    smoothing_factor: torch.Tensor  # [n, 1] per row
    smoothing_curve: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        factor, curve = self.smoothing_factor, self.smoothing_curve
        top = x.amax(dim=-1, keepdim=True)
        d = x - top
        k, c = (3 - curve) / 2, (curve - 1) / 2
        bent = top - k * factor * d * d + c * factor * d * d * d
        return torch.where(torch.isfinite(x), bent, x)


class AdaptiveP(Stage):
    """llama.cpp adaptive-p: the target adapts as clamp(2 target - average, 0, 1), the average being the
    decayed mean of the probabilities (before this stage) of the tokens the row drew; each surviving
    token's logit becomes peak - sharpness d^2 / (1 + d), d = |p - target| / width. The row then draws from
    the result; accept() moves the average with the drawn token's probability before this stage."""

    name, effect = "adaptive_p", "reshape"
    adaptive_target: torch.Tensor  # [n, 1] per row
    adaptive_decay: torch.Tensor  # [n, 1] per row
    total: torch.Tensor  # [n] per row: the decayed sum of the drawn tokens' probabilities
    weight: torch.Tensor  # [n] per row: the decayed count they are averaged over

    def prepare(self) -> None:
        super().prepare()
        decay = self.adaptive_decay[:, 0]  # llama.cpp primes the average as if the target were already met
        self.hold(total=self.adaptive_target[:, 0].clamp(0, 1) / (1 - decay), weight=1 / (1 - decay))
        self.before: torch.Tensor | None = None
        """This step's log-probabilities before the stage, for accept()."""

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        logp = torch.log_softmax(x, dim=-1)
        self.before = logp
        average = (self.total / self.weight)[:, None]
        target = (2 * self.adaptive_target - average).clamp(0, 1)
        d = ((logp.exp() - target) / ADAPTIVE_WIDTH).abs()
        shaped = ADAPTIVE_PEAK - ADAPTIVE_SHARPNESS * d * d / (1 + d)
        return torch.where(torch.isfinite(x), shaped, NEG_INF)

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None) -> None:
        if self.before is None:  # forced tokens (a branch's prefix) were not drawn through it
            return
        drawn = self.before.gather(1, tokens[:, None])[:, 0].exp()
        decay = self.adaptive_decay[:, 0]
        self.total = drawn + decay * self.total
        self.weight = 1 + decay * self.weight
        self.before = None
