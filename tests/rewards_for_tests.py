"""Reward functions the tests pass with --reward tests.rewards_for_tests:NAME."""


def length_reward(completions, **kwargs):
    return [float(len(str(c))) for c in completions]
