"""Reward functions the tests pass with --reward tests.rewards_for_tests:NAME (or by file path)."""

import random

_rng = random.Random(0)


def length_reward(completions, **kwargs):
    return [float(len(str(c))) for c in completions]


def controlled(prompts, completions, **kwargs):
    """Prompts whose first operand is even always score 1 (zero variance); the others score at random."""
    out = []
    for prompt in prompts:
        first = int(str(prompt).split("+")[0])
        out.append(1.0 if first % 2 == 0 else float(_rng.random() < 0.5))
    return out


def constant(completions, **kwargs):
    return [1.0] * len(completions)
