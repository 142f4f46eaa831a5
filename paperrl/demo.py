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

SEED = 0
MAX_OPERAND = 29  # a + b with a, b in [0, 29]
# The split is made on unordered pairs {a, b}: a + b and b + a always fall on the same side, so no
# commutative twin of a test sum is ever trained on. Validation chooses the demo's settings; test only reports.
TEST_PAIRS = 60
VALIDATION_PAIRS = 30
SPLITS = ("train", "validation", "test")

WHY = "embedded default: tiny model on 2 CPU cores"

# Settings every demo run uses; each trainer kind (paperrl/kinds/) builds its own on one of these,
# and the recipe's own `demo` values come on top.
COMMON = {
    "gradient_checkpointing": (False, "tiny model: checkpointing only slows it down"),
    "logging_steps": (1, WHY),
    "save_steps": (20, WHY),
    "seed": (SEED, WHY),
}
ONLINE = {  # generation: GRPO family and RLOO
    **COMMON,
    "max_steps": (300, WHY),
    "max_completion_length": (4, "demo task: a sum has at most 2 digits, plus end of text"),
    "learning_rate": (3e-4, WHY),
    "per_device_train_batch_size": (32, "embedded default: 32 completions per micro-batch fit a tiny model"),
}
OFFLINE = {  # preference pairs and SFT
    **COMMON,
    "max_steps": (40, WHY),
    "max_length": (16, "demo task: prompt and answer fit in 16 characters"),
}


def _kind(trainer: str):
    from paperrl.kinds import KINDS

    return KINDS[trainer]


def task_name(trainer: str) -> str:
    return f"demo:{_kind(trainer).task.name}"


def one_thread() -> None:
    """The tiny model's matrices are 64 wide: a second intra-op thread only adds synchronisation, and on a
    busy 2-core machine its spin-waits made each step ~20x slower (measured). A user's OMP_NUM_THREADS wins."""
    if not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(1)


def cache_dir() -> Path:
    root = os.environ.get("PAPERRL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "paperrl")
    return Path(root)


def build_key() -> str:
    """A hash of the code and constants that build the model and of the libraries it runs on: a changed
    warm-up or a new torch builds a new model instead of reusing a stale one."""
    import hashlib
    import inspect
    from importlib.metadata import version

    code = [inspect.getsource(f) for f in (_pairs, _wrong, completion_row, _tokenizer, _model, _batch, _answers_right,
                                           _warm_up, save_atomically, ensure_model)]
    constants = (SEED, MAX_OPERAND, TEST_PAIRS, VALIDATION_PAIRS, WARM_UP_TARGET, WARM_UP_MAX_STEPS,
                 WARM_UP_CHECK_EVERY, _ALPHABET, _SPECIALS)
    libraries = [f"{package}=={version(package)}" for package in ("torch", "transformers", "tokenizers")]
    return hashlib.sha256(repr((code, constants, libraries)).encode()).hexdigest()[:12]


def model_dir() -> Path:
    return cache_dir() / f"tiny-qwen2-addition-{build_key()}"


# ---------------------------------------------------------------- tasks


def _pairs(split: str) -> list[tuple[int, int]]:
    """The ordered pairs (a, b) of one split; both orders of an unordered pair stay together."""
    unordered = [(a, b) for a in range(MAX_OPERAND + 1) for b in range(a, MAX_OPERAND + 1)]
    random.Random(SEED).shuffle(unordered)
    start = {"test": 0, "validation": TEST_PAIRS, "train": TEST_PAIRS + VALIDATION_PAIRS}[split]
    end = {"test": TEST_PAIRS, "validation": TEST_PAIRS + VALIDATION_PAIRS, "train": len(unordered)}[split]
    return [p for a, b in unordered[start:end] for p in ([(a, b), (b, a)] if a != b else [(a, b)])]


def _wrong(a: int, b: int, rng: random.Random) -> int:
    offset = rng.choice([-10, -2, -1, 1, 2, 10])
    return max(0, a + b + offset) if a + b + offset != a + b else a + b + 1


def rows(trainer: str, split: str) -> list[dict]:
    """Rows of a trainer kind's demo task; split is 'train', 'validation' or 'test'."""
    rng = random.Random(SEED + 1)
    return [_kind(trainer).task.row(a, b, rng) for a, b in _pairs(split)]


# The tasks the kinds share: (a, b, rng) -> one row.
def addition_row(a: int, b: int, rng: random.Random) -> dict:
    return {"prompt": f"{a}+{b}=", "solution": str(a + b)}


def preference_row(a: int, b: int, rng: random.Random) -> dict:
    return {"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(_wrong(a, b, rng))}


def completion_row(a: int, b: int, rng: random.Random) -> dict:
    return {"prompt": f"{a}+{b}=", "completion": str(a + b)}


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


WARM_UP_TARGET = 0.3  # stop the warm-up once this share of validation sums is right: RL has room to learn
WARM_UP_MAX_STEPS = 650
WARM_UP_CHECK_EVERY = 10


def _batch(tokenizer, rows_: list[dict]):
    """Prompt + answer + EOS, right-padded; labels on the answer only."""
    import torch

    seqs, labels = [], []
    for row in rows_:
        p = tokenizer(row["prompt"])["input_ids"]
        c = tokenizer(row["completion"])["input_ids"] + [tokenizer.eos_token_id]
        seqs.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
    lab = torch.tensor([s + [-100] * (width - len(s)) for s in labels])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    return ids, mask, lab


def _answers_right(model, tokenizer, rows_: list[dict]) -> float:
    """Share of rows whose every answer token (and EOS) is the argmax given the prompt and the answer so far:
    exactly the rows that greedy decoding answers right, in one forward pass."""
    import torch

    ids, mask, lab = _batch(tokenizer, rows_)
    device = next(model.parameters()).device
    with torch.no_grad():
        predicted = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].argmax(-1).cpu()
    target = lab[:, 1:]
    wrong = ((predicted != target) & (target != -100)).any(dim=1)
    return 1 - wrong.float().mean().item()


def _warm_up(model, tokenizer, target: float = WARM_UP_TARGET, max_steps: int = WARM_UP_MAX_STEPS,
             seed: int = SEED, batch_size: int = 64) -> int:
    """Supervised training on the training split (answer tokens only) until `target` of the validation sums are
    right. A stopping rule, not a step count: float rounding differs between CPUs, and a fixed count lands
    anywhere from 25% to 85% depending on the machine. Returns the steps taken. Also continues a built model
    (the distillation kinds' teacher)."""
    import torch

    train, validation = ([completion_row(a, b, None) for a, b in _pairs(split)] for split in ("train", "validation"))
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step = 0
    while step < max_steps:
        model.train()
        ids, mask, lab = _batch(tokenizer, rng.sample(train, batch_size))
        model(input_ids=ids, attention_mask=mask, labels=lab).loss.backward()
        opt.step()
        opt.zero_grad()
        step += 1
        if step % WARM_UP_CHECK_EVERY == 0:
            model.eval()
            if _answers_right(model, tokenizer, validation) >= target:
                break
    model.eval()
    return step


def save_atomically(model, tokenizer, target: Path) -> Path:
    """Write to a temporary directory, then rename: a half-built model is never seen."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process built it first
    return target


def ensure_model() -> Path:
    """Build the tiny model once (a few seconds) and return its directory."""
    target = model_dir()
    if (target / "config.json").exists():
        return target
    import torch

    one_thread()
    torch.manual_seed(SEED)
    tokenizer = _tokenizer()
    model = _model(tokenizer)
    _warm_up(model, tokenizer)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_atomically(model, tokenizer, target)


# ---------------------------------------------------------------- evaluation


def exact_match(model, tokenizer, split: str) -> float:
    """Share of the split's sums that greedy decoding answers right (by teacher forcing, one forward pass)."""
    return _answers_right(model, tokenizer, [completion_row(a, b, None) for a, b in _pairs(split)])


def preference_accuracy(model, tokenizer, split: str) -> float:
    """Share of the split's pairs whose right answer the model finds likelier than the wrong one."""
    rng = random.Random(SEED + 1)
    pairs = [preference_row(a, b, rng) for a, b in _pairs(split)]
    chosen = _answer_logprobs(model, tokenizer, [{**r, "completion": r["chosen"]} for r in pairs])
    rejected = _answer_logprobs(model, tokenizer, [{**r, "completion": r["rejected"]} for r in pairs])
    return (chosen > rejected).float().mean().item()


EXACT_MATCH = "exact-match accuracy (greedy)"
PREFERENCE_ACCURACY = "preference accuracy (log-probability of the whole answer, not length-normalised)"


def evaluate(model, tokenizer, trainer: str, split: str = "test") -> dict:
    """The metric of a trainer kind's demo task on one split, by the task's own evaluation."""
    import torch

    task = _kind(trainer).task
    was_training = model.training
    model.eval()
    with torch.no_grad():
        value = task.evaluate(model, tokenizer, split)
    model.train(was_training)
    return {"metric": f"{split} {task.metric}", "split": split, "n": len(_pairs(split)), "value": value}


def _answer_logprobs(model, tokenizer, rows_: list[dict]):
    """log pi(answer + EOS | prompt) per row, in one forward pass."""
    import torch

    ids, mask, lab = _batch(tokenizer, rows_)
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
    target = lab[:, 1:].to(device)
    token = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token * (target != -100)).sum(-1).cpu()
