"""Expected verify rows of the kinds-pref helper's recipes (kto, reward, orpo, tpo, online-dpo kinds; merged by
tests/test_verify.py)."""

OFFLINE_BATCH = ["examples per update on 1 process", "examples per update on 8 processes"]
SCHEDULE = ["learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", "epochs"]
REWARD = ["reward-model loss", "gradient of the reward-model loss, all parameters"]

ROWS = {
    "kto": ["KL reference point z0 (batch estimate, clamped at 0)", "KTO loss", "gradient of the KTO loss, all parameters",
            *OFFLINE_BATCH, *SCHEDULE],
    "reward-centering": [*REWARD, *SCHEDULE],
    "llama2-margin": [*REWARD, *OFFLINE_BATCH, *SCHEDULE],
    "orpo": ["ORPO loss (SFT + lambda x odds-ratio term)", "gradient of the ORPO loss, all parameters", *OFFLINE_BATCH,
             *SCHEDULE],
    "tpo": ["TPO loss (preference term + alpha x gold NLL)", "gradient of the TPO loss, all parameters", *SCHEDULE],
    "tpo-l": ["TPO-L loss (preference term + alpha x gold NLL)", "gradient of the TPO-L loss, all parameters", *SCHEDULE],
    "online-dpo": ["online DPO loss on the reward-ordered pairs", "gradient of the online DPO loss, all parameters",
                   *SCHEDULE],
}
