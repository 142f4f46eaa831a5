"""Expected verify rows of the grpo-b helper's recipes (merged by tests/test_verify.py)."""

SCHEDULE = ["learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", "epochs"]
BATCH = ["samples per update and per rollout on 1 process", "samples per update and per rollout on 8 processes"]
GRPO = ["advantage (group)", "policy loss (ratio, clip, aggregation)", "gradient of the policy loss, all parameters",
        "TRL's own dapo normaliser (without paperrl's exact_token_normaliser)"]
CORRECTED = [f"{what}, {policy}" for policy in ("on-policy", "off-policy")
             for what in ("corrected policy loss", "gradient of the corrected loss")]

ROWS = {
    "tis": [*GRPO, "mismatch weight (token truncate, c_max 2.0)", *CORRECTED, *SCHEDULE],
    "mis": [*GRPO, "mismatch weight (token mask, c_min 0.5, c_max 2.0)", *CORRECTED, *SCHEDULE],
    "sequence-is": [*GRPO, "mismatch weight (sequence truncate, c_max 2.0)", *CORRECTED, *SCHEDULE],
    "gmpo": ["advantage (group)", "GMPO loss (one-sided log-space clip, geometric mean of the token ratios)",
             "gradient of the GMPO loss, all parameters", *BATCH, *SCHEDULE],
    "a-star-po": ["Stage 1: V*(x) from the reference samples' rewards", "Stage 2: regression loss",
                  "Stage 2: gradient of the regression loss, all parameters", *BATCH, *SCHEDULE],
    "reinforce-pp": ["advantage: group-mean baseline, normalised over the batch's completions",
                     "advantage: the paper's statistics over the batch's tokens (Eq. 10)",
                     "policy gradient, on-policy (the paper's token mean against TRL's per-completion sum)", *SCHEDULE],
}
