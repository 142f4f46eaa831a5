"""Expected `paperrl verify` rows of helper grpo-a's recipes (merged by tests/test_verify.py)."""

BATCH = ["samples per update and per rollout on 1 process", "samples per update and per rollout on 8 processes"]
SCHEDULE = ["learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", "epochs"]
POLICY = ["policy loss (ratio, clip, aggregation)", "gradient of the policy loss, all parameters"]
NORMALISER = "TRL's own dapo normaliser (without paperrl's exact_token_normaliser)"

ROWS = {
    "deepseek-r1": ["advantage (group)", *POLICY, *BATCH, *SCHEDULE],
    "intellect-2": ["advantage (group)", *POLICY, NORMALISER, *BATCH, *SCHEDULE],
    "skywork-or1": ["advantage (group)", *POLICY, "adaptive entropy coefficient after each optimizer step",
                    "entropy bonus: the mean token entropy the coefficient multiplies", NORMALISER, *BATCH, *SCHEDULE],
    "80-20": ["advantage (group)", "overlong filtering: truncated completions get no loss", *POLICY,
              "high-entropy tokens given a gradient, with the paper's batch-wide threshold",
              "policy loss with the paper's batch-wide entropy threshold", "soft overlong punishment",
              "dynamic sampling: the kept groups are the informative ones, in order",
              "dynamic sampling: advantage (group) over the kept groups", NORMALISER,
              "reward verifier on BytedTsinghua-SIA/DAPO-Math-17k's answer format", *BATCH, *SCHEDULE],
    "deepseek-v3.2": ["advantage (group)", *POLICY, *SCHEDULE],
    "gdpo": ["advantage (gdpo)", *POLICY, NORMALISER, *BATCH, *SCHEDULE],
    "vespo": ["advantage (group)", *POLICY, NORMALISER, *BATCH, *SCHEDULE],
    "demystifying": ["advantage (group)", *POLICY, "cosine length-scaling reward", NORMALISER, *BATCH, *SCHEDULE],
}
