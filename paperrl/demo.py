"""The embedded default: a tiny Qwen2 model and toy tasks, built offline and deterministically.

The model is a real transformers architecture with a character-level tokenizer made with
`tokenizers`. It is warmed up on 2-digit addition with a short supervised loop so that it
answers some sums right and many wrong: exactly the state in which RL has something to learn.
It is built once and cached under the user's cache directory. Nothing is downloaded.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

VERSION = "v1"
SEED = 0
MAX_OPERAND = 29  # a + b with a, b in [0, 29]
HELD_OUT = 120  # pairs never seen in warm-up or training

_WHY = "embedded default: tiny model on 2 CPU cores"

# Settings every demo run uses, then per trainer kind (the recipe's own `demo` values come on top).
_COMMON = {
    "gradient_checkpointing": (False, "tiny model: checkpointing only slows it down"),
    "logging_steps": (1, _WHY),
    "save_steps": (20, _WHY),
    "seed": (SEED, _WHY),
}
_ONLINE = {  # generation: GRPO family and RLOO
    **_COMMON,
    "max_steps": (300, _WHY),
    "max_completion_length": (4, "demo task: a sum has at most 2 digits, plus end of text"),
    "learning_rate": (3e-4, _WHY),
    "per_device_train_batch_size": (32, "embedded default: 32 completions per micro-batch fit a tiny model"),
}
_OFFLINE = {  # preference pairs and SFT
    **_COMMON,
    "max_steps": (40, _WHY),
    "max_length": (16, "demo task: prompt and answer fit in 16 characters"),
}
DEMO_CONFIG = {
    "grpo": {**_ONLINE, "temperature": (1.0, _WHY)},
    "rloo": _ONLINE,
    "dpo": _OFFLINE,
    "cpo": _OFFLINE,
    "sft": {**_OFFLINE, "per_device_train_batch_size": (16, _WHY)},
}

TASKS = {"grpo": "addition", "rloo": "addition", "dpo": "addition-preferences",
         "cpo": "addition-preferences", "sft": "addition-sft"}


def task_name(trainer: str) -> str:
    return f"demo:{TASKS[trainer]}"


def cache_dir() -> Path:
    root = os.environ.get("PAPERRL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "paperrl")
    return Path(root)


def model_dir() -> Path:
    return cache_dir() / f"tiny-qwen2-addition-{VERSION}"


# ---------------------------------------------------------------- tasks


def _pairs() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    pairs = [(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    random.Random(SEED).shuffle(pairs)
    return pairs[HELD_OUT:], pairs[:HELD_OUT]


def _wrong(a: int, b: int, rng: random.Random) -> int:
    offset = rng.choice([-10, -2, -1, 1, 2, 10])
    return max(0, a + b + offset) if a + b + offset != a + b else a + b + 1


def rows(trainer: str, split: str) -> list[dict]:
    """Rows of the demo task for a trainer kind; split is 'train' or 'test' (held out)."""
    train, test = _pairs()
    pairs = train if split == "train" else test
    rng = random.Random(SEED + 1)
    out = []
    for a, b in pairs:
        prompt, answer = f"{a}+{b}=", str(a + b)
        if trainer in ("grpo", "rloo"):
            out.append({"prompt": prompt, "solution": answer})
        elif trainer in ("dpo", "cpo"):
            out.append({"prompt": prompt, "chosen": answer, "rejected": str(_wrong(a, b, rng))})
        else:
            out.append({"prompt": prompt, "completion": answer})
    return out


def dataset(trainer: str, split: str):
    from datasets import Dataset

    return Dataset.from_list(rows(trainer, split))


# ---------------------------------------------------------------- model

_ALPHABET = list("0123456789+-*/=()<>.,:;!?'\" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n")
_SPECIALS = ["<pad>", "<eos>", "<unk>"]


def _tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_SPECIALS + _ALPHABET)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(""), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _model(tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(SEED)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def _warm_up(model, tokenizer, steps: int = 650, batch_size: int = 64) -> None:
    """Supervised warm-up on the training split: completion tokens only."""
    import torch

    train = rows("sft", "train")
    rng = random.Random(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    eos = tokenizer.eos_token_id
    model.train()
    for _ in range(steps):
        batch = rng.sample(train, batch_size)
        seqs, labels = [], []
        for row in batch:
            p = tokenizer(row["prompt"])["input_ids"]
            c = tokenizer(row["completion"])["input_ids"] + [eos]
            seqs.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
        lab = torch.tensor([s + [-100] * (width - len(s)) for s in labels])
        mask = (torch.arange(width)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).long()
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def ensure_model() -> Path:
    """Build the tiny model once (a few seconds) and return its directory."""
    target = model_dir()
    if (target / "config.json").exists():
        return target
    import torch

    torch.manual_seed(SEED)
    tokenizer = _tokenizer()
    model = _model(tokenizer)
    _warm_up(model, tokenizer)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)  # atomic: a half-built model is never seen
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process built it first
    return target


# ---------------------------------------------------------------- evaluation


def evaluate(model, tokenizer, trainer: str) -> dict:
    """The held-out metric of the demo task: exact-match accuracy, or preference accuracy."""
    import torch

    test = rows(trainer, "test")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        if trainer in ("dpo", "cpo"):
            right = 0
            for row in test:
                scores = [_logprob(model, tokenizer, row["prompt"], row[k], device) for k in ("chosen", "rejected")]
                right += scores[0] > scores[1]
            result = {"metric": "held-out preference accuracy", "value": right / len(test)}
        else:
            right = 0
            for row in test:
                ids = torch.tensor([tokenizer(row["prompt"])["input_ids"]], device=device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
                text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
                right += text.strip() == row.get("solution", row.get("completion"))
            result = {"metric": "held-out exact-match accuracy", "value": right / len(test)}
    model.train(was_training)
    return result


def _logprob(model, tokenizer, prompt: str, answer: str, device) -> float:
    import torch

    p = tokenizer(prompt)["input_ids"]
    a = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([p + a], device=device)
    logits = model(input_ids=ids).logits[0, len(p) - 1:-1]
    return torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(a, device=device)[:, None]).sum().item()
