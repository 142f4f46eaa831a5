"""A*-PO (2505.20686): TRL's experimental A2POTrainer against the paper's two stages.

Stage 1 is TRL's own `_estimate_optimal_values` on four hand-written prompts; the reward function hands out
binary rewards written by hand for the N reference samples of each prompt (one prompt all wrong, one all right, two
mixed), so V* depends only on them. Stage 2 is TRL's own `_prepare_inputs` and `compute_loss`, with the policy's
generation replaced by hand-written completions (one ends in EOS early, one is truncated) and the policy moved away
from the reference, so that log pi/pi_ref is not zero.
"""

from __future__ import annotations

import torch

from paperrl.verify.references import ref_token_logps
from paperrl.verify.scenario import Check, compare, grads, objective_values, perturb, real_trainer, scenario_plan

PROMPTS = ["1+2=", "13+4=", "25+6=", "7+28="]
N = 8  # the paper's number of reference samples per prompt (the authors' num_gen_to_use)
VALUE_REWARDS = [[1, 0, 0, 1, 0, 0, 0, 0], [0] * N, [1] * N, [1, 1, 1, 0, 1, 1, 0, 1]]
COMPLETIONS = ["3E", "71E", "3131", "3535"]  # "E" is EOS; the last two do not end within MAX_LEN tokens
REWARDS = [1, 0, 1, 0]
MAX_LEN = 4


def ref_v_star(rewards, beta1: float) -> torch.Tensor:
    """A*-PO Stage 1: V*(x) = beta1 log E_{y ~ pi_ref}[exp(r(x, y) / beta1)], the mean over the N reference samples."""
    r = torch.as_tensor(rewards, dtype=torch.float64)
    return beta1 * torch.log(torch.exp(r / beta1).mean(-1))


def ref_a2po_loss(logp, ref_logp, rewards, v_star, beta2: float) -> torch.Tensor:
    """A*-PO Stage 2: the mean over prompts of (beta2 log pi(y|x)/pi_ref(y|x) - (r(x, y) - V*(x)))^2, one y ~ pi
    per prompt, log pi(y|x) the sum over the completion's tokens (its EOS included)."""
    return ((beta2 * (logp - ref_logp) - (rewards - v_star)) ** 2).mean()


class _Rewards:
    """The hand-written rewards: Stage 1's N per prompt in the order TRL samples them, then Stage 2's one each."""

    __name__ = "table_reward"

    def __init__(self):
        self.stage = 1
        self.seen: dict[str, int] = {}

    def __call__(self, prompts, completions, **kwargs):
        if self.stage == 2:
            return [float(REWARDS[PROMPTS.index(p)]) for p in prompts]
        out = []
        for p in prompts:
            i = self.seen.get(p, 0)
            self.seen[p] = i + 1
            out.append(float(VALUE_REWARDS[PROMPTS.index(p)][i % N]) if i < N else float("nan"))
        return out


def _sequence_logp(model, tokenizer, prompt: str, completion: list[int]) -> torch.Tensor:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ones = torch.ones(1, len(ids), dtype=torch.long)
    return ref_token_logps(model, torch.tensor([ids]), ones, torch.tensor([completion]),
                           torch.ones(1, len(completion), dtype=torch.long))[0].sum()


def verify_a2po(recipe_name: str, sets: list[str]) -> list[Check]:
    from trl.data_utils import maybe_apply_chat_template  # the prompt text TRL keys V* by (not its loss)

    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PROMPTS),
                         max_completion_length=MAX_LEN, gradient_accumulation_steps=1)
    objective = objective_values(plan.recipe)
    src = plan.recipe.objective
    rewards = _Rewards()
    trainer = real_trainer(plan, [rewards], rows=[{"prompt": p} for p in PROMPTS])
    tokenizer = trainer.processing_class
    trainer._estimate_optimal_values()  # Stage 1, TRL's own
    keys = [maybe_apply_chat_template({"prompt": p}, tokenizer)["prompt"] for p in PROMPTS]
    theirs_v = torch.tensor([trainer._optimal_values.get(k, float("nan")) for k in keys], dtype=torch.float64)
    ours_v = ref_v_star(VALUE_REWARDS, objective["optimal_value"])
    drawn = {p: rewards.seen.get(p, 0) for p in PROMPTS}
    checks = [compare("Stage 1: V*(x) from the reference samples' rewards", src.optimal_value.source, ours_v,
                      theirs_v, note=f"binary rewards of {N} reference samples per prompt, written by hand (one "
                                     f"prompt all wrong, one all right); samples TRL drew per prompt: "
                                     f"{sorted(set(drawn.values()))}")]
    if set(drawn.values()) != {N}:  # TRL drew another number of samples: V* above is of the wrong sample
        checks[-1].status = "FAIL"
        checks[-1].note += f"; the paper's N = {N}"

    # Stage 2: one hand-written completion per prompt, the policy moved away from the reference
    eos = tokenizer.eos_token_id
    ids = [[eos if ch == "E" else tokenizer.convert_tokens_to_ids(ch) for ch in text] for text in COMPLETIONS]
    width = max(len(c) for c in ids)
    model = trainer.model

    def generate(input_ids=None, attention_mask=None, **kwargs):
        rows = [torch.cat([input_ids[j], torch.tensor(ids[j] + [tokenizer.pad_token_id] * (width - len(ids[j])))])
                for j in range(input_ids.shape[0])]
        return torch.stack(rows)

    perturb(model, 0.05)
    model.generate = generate
    rewards.stage = 2
    inputs = trainer._prepare_inputs([{"prompt": p} for p in PROMPTS])
    theirs = trainer.compute_loss(model, inputs)
    completions = [c[: c.index(eos) + 1] if eos in c else c for c in ids]  # y ends at its EOS, or at the limit
    logp = torch.stack([_sequence_logp(model, tokenizer, p, c) for p, c in zip(PROMPTS, completions)])
    with torch.no_grad():
        ref_logp = torch.stack([_sequence_logp(trainer.ref_model, tokenizer, p, c) for p, c in zip(PROMPTS, completions)])
    ours = ref_a2po_loss(logp, ref_logp, torch.tensor(REWARDS, dtype=torch.float32), ours_v.float(),
                         objective["advantage_regression"])
    eq = f"{src.advantage_regression.source}; {src.optimal_value.source}"
    note = "4 prompts, one completion each (two end in EOS, two are truncated at 4 tokens); policy perturbed"
    checks.append(compare("Stage 2: regression loss", eq, ours.detach().reshape(1), theirs.detach().reshape(1),
                          note=note))
    checks.append(compare("Stage 2: gradient of the regression loss, all parameters", eq, grads(model, ours),
                          grads(model, theirs), note=note))
    return checks
