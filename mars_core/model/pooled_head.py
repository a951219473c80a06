"""Where the fine-tuned reward head reads the encoder: its own pooler ([CLS], transformers' layout) or the
L2-normalised mean of the token states (the sentence-embedding features the linear model is fitted on).

Mean pooling is what makes linear probing, then fine-tuning (LP-FT; Kumar et al., 2022) start where the
linear head is: the head is fitted by Bradley-Terry on exactly these features, then the encoder moves a little.

Checkpoints stay plain ``save_pretrained`` folders. A mean-pooled one records ``"mars_pooling": "mean"`` in
its config.json; plain transformers loads every weight, but its own forward pools [CLS] through BERT's pooler,
so to reproduce our rewards apply :func:`pooled_logits` to the plainly loaded model (README: reward models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import SequenceClassifierOutput

POOLING_KEY = "mars_pooling"
POOLINGS = ("cls", "mean")


def score_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The last Linear with one output: the reward head (BERT's classifier, RoBERTa's out_proj, ...)."""
    found = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if not found:
        raise ValueError(f"{type(model).__name__} has no Linear layer with one output to act as the reward head")
    return found[-1]


def mean_features(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-norm mean of the unpadded token states (sentence-transformers' mean pooling + Normalize)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(summed, p=2, dim=-1)


def pooled_logits(hf_model: torch.nn.Module, pooling: str, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
    """Rewards (batch, 1) of a sequence classifier under ``pooling``; works on a plainly loaded checkpoint."""
    if pooling == "cls":
        return hf_model(input_ids=input_ids, attention_mask=attention_mask).logits
    hidden = hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]
    return score_layer(hf_model)(mean_features(hidden, attention_mask))


class PooledScorer(torch.nn.Module):
    """A sequence classifier with a chosen pooling, called like one (``model(**batch).logits``)."""

    def __init__(self, hf_model: torch.nn.Module, pooling: str) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        super().__init__()
        self.hf = hf_model
        self.pooling = pooling
        setattr(hf_model.config, POOLING_KEY, pooling)  # saved with the weights, read back on load
        if pooling == "mean":  # an unused pooler would get no gradient (and DDP would wait for one)
            for name, module in hf_model.named_modules():
                if name.rsplit(".", 1)[-1] == "pooler":
                    module.requires_grad_(False)

    @property
    def config(self):
        return self.hf.config

    def set_attn_implementation(self, name: str) -> None:
        self.hf.set_attn_implementation(name)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=pooled_logits(self.hf, self.pooling, input_ids, attention_mask))

    def save_pretrained(self, folder, **kwargs) -> None:
        self.hf.save_pretrained(folder, **kwargs)


def stored_pooling(hf_model: torch.nn.Module) -> str:
    """The pooling a checkpoint was trained with: ours say so; any other (TRL's) used its own ([CLS]) pooler."""
    pooling = getattr(hf_model.config, POOLING_KEY, None) or "cls"
    if pooling not in POOLINGS:
        raise ValueError(f"checkpoint config has {POOLING_KEY}={pooling!r}; expected one of {', '.join(POOLINGS)}")
    return pooling
