"""The sft kind's verifier: each SFT paper's own checks, by what its recipe's objective states (BEMA's weight average,
DFT's token weighting, packing)."""

from __future__ import annotations

import copy
from collections import Counter

import torch

from paperrl.verify.scenario import Check, compare, grads, real_trainer, scenario_plan

# Prompt/completion pairs written by hand: answers of 1-3 characters, and three documents longer than the demo's
# 16-token window (33 and 18 tokens with their end token) or exactly as long (16), so that packing must split them.
PAIRS = [("12+7=", "19"), ("3+4=", "7"), ("25+25=", "50"), ("9+9=", "18"), ("31+12=", "43"), ("8+1=", "9"),
         ("47+38=", "85"), ("6+60=", "66"), ("0+0=", "0"), ("29+29=", "58"), ("14+5=", "19"), ("2+22=", "24")]
LONG = [("1234567890+1234567890=", "2469135780"), ("11111+22222=", "33333"), ("123456+1=", "123457")]


def verify_sft(recipe_name: str, sets: list[str]) -> list[Check]:
    from paperrl import recipe as recipes

    objective = recipes.load(recipe_name, sets).objective
    checks = []
    if objective.averaging is not None:
        from paperrl.verify.averaging import verify_averaging

        checks += verify_averaging(recipe_name, sets)
    if objective.token_weighting is not None:
        checks += verify_token_weighting(recipe_name, sets)
    if objective.packing is not None:
        checks += verify_packing(recipe_name, sets)
    return checks


# ---------------------------------------------------------------- DFT


def ref_dft_loss(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DFT: -sum_t sg(pi(y_t)) log pi(y_t) over the target tokens, divided by their number."""
    return -(token_logps.exp().detach() * token_logps * mask).sum() / mask.sum().clamp(min=1)


def verify_token_weighting(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                         packing=False)
    trainer = real_trainer(plan, rows=[{"prompt": p, "completion": c} for p, c in PAIRS[:8]])
    model = trainer.model
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    theirs = trainer.compute_loss(model, dict(batch))
    their_grad = grads(model, theirs)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = (labels != -100).float()
    token = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    ours = ref_dft_loss(token, mask)
    eq = plan.recipe.objective.token_weighting.source
    p = token.detach().exp()[mask.bool()]
    note = f"{int(mask.sum())} answer tokens, pi(y_t) from {p.min().item():.2f} to {p.max().item():.2f}"
    return [compare("loss: -mean_t sg(pi(y_t)) log pi(y_t) over the answer tokens", eq, ours, theirs, note=note),
            compare("gradient of the loss, all parameters", eq, grads(model, ours), their_grad, note=note)]


# ---------------------------------------------------------------- packing


def ref_best_fit_decreasing(lengths: list[int], capacity: int) -> list[int]:
    """Fewer Truncations: chunks by decreasing length, each into the fullest window it still fits, else a new one.
    Returns the windows' fills, largest first."""
    bins: list[int] = []
    for n in sorted(lengths, reverse=True):
        fits = [i for i, used in enumerate(bins) if used + n <= capacity]
        if fits:
            best = max(fits, key=lambda i: bins[i])
            bins[best] += n
        else:
            bins.append(n)
    return sorted(bins, reverse=True)


def _fragments(packed) -> list[tuple[int, ...]]:
    """Every document piece of the packed windows, in order (one piece per window without per-document lengths)."""
    out = []
    for row in packed:
        ids, start = row["input_ids"], 0
        for n in row.get("seq_lengths") or [len(ids)]:
            out.append(tuple(ids[start:start + n]))
            start += n
    return out


def verify_packing(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=4, gradient_accumulation_steps=1)
    window = plan.config.get("max_length") or 1024
    rows = [{"prompt": p, "completion": c} for p, c in PAIRS + LONG]
    trainer = real_trainer(plan, rows=rows)
    spec = plan.recipe.objective.packing.pick(plan.demo_mode)[0]
    eq = plan.recipe.objective.packing.source
    # the documents as TRL tokenizes them, unpacked and untruncated
    from datasets import Dataset

    unpacked = copy.copy(trainer.args)  # a shallow copy: TrainingArguments' __post_init__ must not run again
    unpacked.max_length, unpacked.packing = None, False
    plain = trainer._prepare_dataset(Dataset.from_list(rows), trainer.processing_class, unpacked, False, None, "verify")
    documents = [tuple(r["input_ids"]) for r in plain]
    packed = trainer.train_dataset
    pieces = _fragments(packed)
    long_docs = [d for d in documents if len(d) > window]
    checks = []
    if spec.get("split_long"):
        lost = sum((Counter(t for d in documents for t in d) - Counter(t for f in pieces for t in f)).values())
        expected = sum(-(-len(d) // window) for d in documents)
        checks.append(Check("no token dropped: documents longer than the window are split, not truncated", eq,
                            float(lost), 0.0, note=f"{len(documents)} documents ({[len(d) for d in long_docs]} tokens "
                            f"over the {window}-token window), {len(pieces)} pieces (the paper's chunking: {expected}); "
                            f"{lost} tokens missing from the packed windows"))
    whole = Counter(pieces)
    split = [d for d in documents if len(d) <= window and whole[d] == 0]
    checks.append(Check("every document no longer than the window sits whole in one window", eq, float(len(split)), 0.0,
                        note=f"{len(split)} of {sum(len(d) <= window for d in documents)} such documents split "
                             "across windows"))
    if spec.get("best_fit"):
        ours = ref_best_fit_decreasing([len(p) for p in pieces], window)
        theirs = sorted((len(r["input_ids"]) for r in packed), reverse=True)
        size = max(len(ours), len(theirs))
        checks.append(compare("best-fit decreasing: the windows' fills", eq,
                              torch.tensor(ours + [0] * (size - len(ours)), dtype=torch.float32),
                              torch.tensor(theirs + [0] * (size - len(theirs)), dtype=torch.float32),
                              note=f"{len(theirs)} windows (reference: {len(ours)})"))
    if spec.get("isolate"):
        checks.append(_isolation(trainer, eq))
    return checks


def _isolation(trainer, eq: str) -> Check:
    """A packed batch through TRL's collator and the model gives each document the log-probabilities it gets alone."""
    model = trainer.model.eval()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    if "position_ids" not in batch:
        return Check("packed documents do not attend to each other", eq, float("inf"), 0.0,
                     note="the collated batch has no per-document positions: documents in one window see each other")
    keys = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k",
            "attention_mask", "seq_idx")
    with torch.no_grad():
        packed = torch.log_softmax(model(**{k: batch[k] for k in keys if k in batch}).logits.float(), -1)[0]
        ids, pos = batch["input_ids"][0], batch["position_ids"][0]
        starts = (pos == 0).nonzero().flatten().tolist() + [len(ids)]
        alone = torch.cat([torch.log_softmax(model(input_ids=ids[a:b][None]).logits.float(), -1)[0]
                           for a, b in zip(starts[:-1], starts[1:]) if b > a])
    model.train()
    return compare("packed documents do not attend to each other (log-probabilities packed vs alone)", eq, alone,
                   packed[:alone.shape[0]], rel=1e-4,
                   note=f"{len(starts) - 1} documents in one padding-free row, "
                        f"{trainer.model.config._attn_implementation} attention")
