"""A reward for the dynamic-sampling benchmark: INFORMATIVE_FRACTION of the prompts get varied rewards."""

import os
import random
import zlib

_rng = random.Random(0)


def fractional(prompts, completions, **kwargs):
    fraction = float(os.environ.get("INFORMATIVE_FRACTION", "0.5"))
    out = []
    for prompt in prompts:
        bucket = zlib.crc32(str(prompt).encode()) % 1000 / 1000
        out.append(float(_rng.random() < 0.5) if bucket < fraction else 1.0)
    return out
