"""A run-time notice for the recipes whose defining setting is vLLM's rollout/training mismatch correction (TIS,
IcePop, sequence-level IS): TRL applies it to vLLM rollouts only, so a run without --vllm trains the base objective.
"""

from __future__ import annotations

import sys

from transformers import TrainerCallback


class VLLMOnly(TrainerCallback):
    """Says at the start of training when the recipe's correction cannot act: no vLLM rollouts, no sampler
    log-probabilities, and TRL's GRPOTrainer skips the correction (`if self.use_vllm and ...`)."""

    def __init__(self):
        super().__init__()

    def on_train_begin(self, args, state, control, **kwargs):
        if getattr(args, "use_vllm", False) or not getattr(args, "vllm_importance_sampling_correction", False):
            return
        if state.is_world_process_zero:
            print(f"paperrl: note: vllm_importance_sampling_mode={args.vllm_importance_sampling_mode} is inactive in "
                  "this run: TRL corrects the mismatch of vLLM rollouts only (--vllm colocate|server); without vLLM "
                  "this run trains the recipe's base objective", file=sys.stderr)
