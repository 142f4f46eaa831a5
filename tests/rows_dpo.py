"""Expected verify rows of the dpo helper's recipes (merged by tests/test_verify.py)."""

PREFERENCE = ["preference loss", "gradient of the preference loss"]
OFFLINE_BATCH = ["examples per update on 1 process", "examples per update on 8 processes"]
SCHEDULE = ["learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", "epochs"]
BCO = ["BCO reward shift delta, which TRL 1.16 leaves out: loss",
       "BCO reward shift delta, which TRL 1.16 leaves out: gradient"]
NLL = ["NLL over each chosen response's length (TRL: over all chosen tokens of the batch): loss",
       "NLL over each chosen response's length (TRL: over all chosen tokens of the batch): gradient"]
TR = ["reference update pi_ref <- alpha pi + (1 - alpha) pi_ref, 4 steps", "reference update period (optimizer steps)"]

ROWS = {
    **{name: [*PREFERENCE, *OFFLINE_BATCH, *SCHEDULE] for name in ("slic-hf", "rso", "sppo")},
    **{name: [*PREFERENCE, *SCHEDULE] for name in ("aot", "aot-unpaired", "iterative-rpo")},
    "bco-pair": [*PREFERENCE, *BCO, *OFFLINE_BATCH, *SCHEDULE],
    "mpo": [*PREFERENCE, *BCO, *NLL, *OFFLINE_BATCH, *SCHEDULE],
    "tr-dpo": [*PREFERENCE, *TR, *SCHEDULE],
}
