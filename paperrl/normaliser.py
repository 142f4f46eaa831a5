"""DAPO's token-level normaliser, exactly: 1 / sum_i |o_i| over each mini-batch (DAPO Eq. 12).

TRL's `dapo` loss divides by the rollout's token count x accumulation / steps_per_generation: an
estimate of a mini-batch's tokens that is exact only when every mini-batch holds the same number
of tokens (or there is one mini-batch per rollout). After each generation this subclass gives
every micro-batch the token count of its own mini-batch, counted over all processes, scaled so
that TRL's formula divides by exactly that count.
"""

from __future__ import annotations


def with_exact_token_normaliser(trainer_cls):
    class ExactTokenNormaliser(trainer_cls):
        def _prepare_inputs(self, generation_batch):
            fresh = self.model.training and (
                self._buffered_inputs is None
                or self._step % (self.args.steps_per_generation * self.num_iterations) == 0)
            inputs = super()._prepare_inputs(generation_batch)
            if fresh and self.loss_type in ("dapo", "cispo", "vespo"):
                set_minibatch_token_counts(self, self._buffered_inputs)
            return inputs

    ExactTokenNormaliser.__name__ = trainer_cls.__name__
    return ExactTokenNormaliser


def set_minibatch_token_counts(trainer, slices: list[dict]) -> None:
    ga, spg = trainer.args.gradient_accumulation_steps, trainer.args.steps_per_generation
    for start in range(0, len(slices), ga):
        window = slices[start:start + ga]
        local = sum(s["completion_mask"].sum() for s in window)
        tokens = trainer.accelerator.gather(local.reshape(1)).sum()  # every process's share of the mini-batch
        for s in window:
            s["num_items_in_batch"] = tokens * spg / ga  # TRL divides by num_items x ga / spg
