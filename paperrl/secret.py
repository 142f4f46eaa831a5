"""Secrets (tokens, API keys, passwords) are read from the environment and never written to a file.

A secret given as a config field (`--set hub_token=...`) is moved into the process environment
(`HF_TOKEN`, where huggingface_hub reads it) and taken out of the TRL config before anything is
built, so it reaches neither `paperrl.json` nor `training_args.bin` in the model and checkpoints;
`scrub` removes every secret value that remains in text (the recorded command line, for one).
"""

from __future__ import annotations

import os
import re

# Config fields that hold a secret; the special tokens of a tokenizer (pad_token, ...) are not secrets.
_SECRET_FIELD = re.compile(r"(^|_)(token|api_key|key|secret|password|passwd)$")
_NOT_SECRET = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask)_token$")
# Where a secret field's value goes: the variable its library reads.
_ENV = {"hub_token": "HF_TOKEN"}
_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
               "GITHUB_TOKEN")


def is_secret(field: str) -> bool:
    return bool(_SECRET_FIELD.search(field)) and not _NOT_SECRET.match(field)


def env_name(field: str) -> str:
    return _ENV.get(field, field.upper())


def move_to_environment(values: dict) -> list[str]:
    """Take every secret field out of `values` into the environment; returns the fields moved."""
    moved = [name for name in values if is_secret(name) and values[name] not in (None, "")]
    for name in moved:
        os.environ[env_name(name)] = str(values.pop(name))
    return moved


def scrub(text: str) -> str:
    """Remove the values of secret environment variables (tokens, API keys) from text."""
    names = set(_SECRET_ENV) | {k for k in os.environ if k.endswith(("_TOKEN", "_API_KEY", "_SECRET", "_PASSWORD"))}
    for name in sorted(names):
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, f"<{name}>")
    return text
