"""Expected verify rows of the distill-sft helper's recipes (merged by tests/test_verify.py)."""

SCHEDULE = ["learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", "epochs"]
OFFLINE_BATCH = ["examples per update on 1 process", "examples per update on 8 processes"]
ONLINE_BATCH = ["samples per update and per rollout on 1 process", "samples per update and per rollout on 8 processes"]
GRADIENT = "gradient of the loss, all student parameters"
IW = "-mean_t sg(r_t A_t) log pi(y_t), r_t = 1 + gamma (1 - prefix |A| share)"
WHOLE = "every document no longer than the window sits whole in one window"
SKIP = " (the paper's first 3 completion tokens skipped)"
ISOLATED = "packed documents do not attend to each other (log-probabilities packed vs alone)"

ROWS = {
    "on-policy-distillation": ["loss: per-token reverse_kl, mean over completion tokens", GRADIENT, *SCHEDULE],
    "gkd": ["loss: per-token generalized_jsd (beta 0.5), mean over output tokens", GRADIENT,
            "on-policy micro-batch: divided by its own generated tokens", *OFFLINE_BATCH, *SCHEDULE],
    "iw-opd": [f"loss (on-policy): {IW}", "gradient (on-policy), all student parameters",
               f"loss (rollout log-probs off by hand): {IW}",
               "gradient (rollout log-probs off by hand), all student parameters",
               "prompt-only data: a finite loss (normalised by the generated tokens)", *OFFLINE_BATCH, *SCHEDULE],
    "sdft": ["loss: per-token divergence to the demonstration-conditioned teacher, sequence means", GRADIENT,
             f"loss: per-token divergence to the demonstration-conditioned teacher, sequence means{SKIP}",
             f"{GRADIENT}{SKIP}", *OFFLINE_BATCH, *SCHEDULE],
    "sdpo": ["self-teacher: the completions with a successful sibling are distilled",
             "loss: top-k divergence to the self-teacher x sg(min(ratio, cap)), sequence means over all completions",
             GRADIENT, "aggregation: the authors' token mean over distilled tokens vs TRL's mean of sequence means",
             *ONLINE_BATCH, *SCHEDULE],
    "dft": ["loss: -mean_t sg(pi(y_t)) log pi(y_t) over the answer tokens", "gradient of the loss, all parameters",
            *OFFLINE_BATCH, *SCHEDULE],
    "bfd-packing": ["no token dropped: documents longer than the window are split, not truncated", WHOLE,
                    "best-fit decreasing: the windows' fills", ISOLATED, *SCHEDULE],
    "t5-packing": [WHOLE, ISOLATED, *OFFLINE_BATCH, *SCHEDULE],
}
