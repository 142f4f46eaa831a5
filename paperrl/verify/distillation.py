"""Distillation kinds (on-policy distillation, GKD, IW-OPD, SDFT, SDPO): does TRL compute the paper's per-token
divergence, weights and loss?

Each verifier builds the recipe's real TRL trainer on the embedded model (and its teacher) and feeds it completions
written by hand (never sampled: TRL's generation step is replaced by the scenario's completions where the loss needs a
rollout). The references below are the papers' equations in plain torch, with the constants of the recipe's
`objective` section; the models only turn tokens into log-probabilities, which both sides compute from the same weights.
"""

from __future__ import annotations

import math
import types

import torch

from paperrl.verify.scenario import Check, compare, grads, perturb, real_trainer, scenario_plan

# ---------------------------------------------------------------- references (the papers' equations)


def ref_divergence(s: torch.Tensor, t: torch.Tensor, spec: dict) -> torch.Tensor:
    """Per-token divergence between student log-probs s and teacher log-probs t (last dim: the vocabulary or a support).
    reverse_kl: KL(S||T) (on-policy distillation); forward_kl: KL(T||S); generalized_jsd (GKD Eq. 1, P = teacher,
    Q = student): M = beta P + (1 - beta) Q, beta KL(P||M) + (1 - beta) KL(Q||M)."""
    kind = spec["kind"]
    if kind == "reverse_kl":
        return (s.exp() * (s - t)).sum(-1)
    if kind == "forward_kl":
        return (t.exp() * (t - s)).sum(-1)
    beta = spec["beta"]
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), 0)
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def ref_topk_support(student_logits: torch.Tensor, teacher_logits: torch.Tensor, k: int, tail: bool):
    """SDPO (authors' compute_self_distillation_loss): the student's k likeliest tokens; both models' true log-probs
    there, plus one bucket holding the remaining mass (tail), or renormalised over the k."""
    ls, lt = torch.log_softmax(student_logits, -1), torch.log_softmax(teacher_logits, -1)
    idx = student_logits.topk(k, -1).indices
    s, t = ls.gather(-1, idx), lt.gather(-1, idx)
    if tail:
        def bucket(x):
            kept = torch.logsumexp(x, -1, keepdim=True).clamp(max=-1e-7)
            return torch.cat([x, torch.log(-torch.expm1(kept))], -1)

        return bucket(s), bucket(t)
    return s - torch.logsumexp(s, -1, keepdim=True), t - torch.logsumexp(t, -1, keepdim=True)


def ref_iw_opd_weights(advantages: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """IW-OPD: r_t = 1 + gamma (1 - sum_{k<t} |A_k| / sum_k |A_k|), per sequence over its completion tokens."""
    a = (advantages * mask).abs()
    before = torch.cumsum(a, -1) - a
    return 1 + gamma * (1 - before / a.sum(-1, keepdim=True))


def ref_self_teacher(rewards: list[float], group: int, threshold: float, exclude_self: bool) -> list[int | None]:
    """SDPO: the sibling whose attempt teaches completion i: the first of its group, other than i when exclude_self,
    whose reward reaches the threshold; None when there is none (no self-distillation for i)."""
    out = []
    for i in range(len(rewards)):
        start = i // group * group
        out.append(next((j for j in range(start, start + group)
                         if rewards[j] >= threshold and not (exclude_self and j == i)), None))
    return out


def token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def sequence_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((x * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


# ---------------------------------------------------------------- the scenario, written by hand

PROMPTS = ["12+7=", "3+4=", "25+25=", "9+9="]
# "E" is the end-of-sequence token; lengths 2..6, one completion without an end (truncated), one wrong answer
COMPLETIONS = ["19E", "7E", "5050E1", "18E"]
GROUP = 4  # SDPO: 2 prompts x 4 completions, rewards by exact match
SDPO_PROMPTS = [("12+7=", "19"), ("3+4=", "7")]
SDPO_COMPLETIONS = ["19E", "18E", "9E", "1E", "7E", "71E", "8E", "7E"]
OLD_SHIFTS = [1.0, -0.5, 0.3, 1.2, 0.0, -1.0]  # log pi - log pi_old by position: e^1, e^1.2 beyond SDPO's cap of 2


def _token_ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.eos_token_id if ch == "E" else tokenizer.convert_tokens_to_ids(ch) for ch in text]


def _padded(seqs: list[list[int]], pad: int, left: bool):
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad] * (width - len(s)) + s if left else s + [pad] * (width - len(s)) for s in seqs])
    lengths = torch.tensor([len(s) for s in seqs])[:, None]
    pos = torch.arange(width)[None]
    mask = (pos >= width - lengths) if left else (pos < lengths)
    return ids, mask.long()


def _rollout(tokenizer, prompts: list[str], completions: list[str]):
    """Left-padded prompts and right-padded completions, as TRL's online trainers lay them out."""
    prompt_ids, prompt_mask = _padded([tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id, True)
    completion_ids, completion_mask = _padded([_token_ids(tokenizer, c) for c in completions], tokenizer.pad_token_id,
                                              False)
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def _completion_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """The logits that predict each completion token (the position before it)."""
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    return model(input_ids=ids, attention_mask=mask).logits[:, prompt_ids.shape[1] - 1:-1].float()


def _objective(plan, key):
    """The recipe's constant for this run: its `demo` stand-in on the embedded default where the paper's value cannot
    exist there (SDPO's top-100 on a 90-token vocabulary), else the paper's value."""
    leaf = getattr(plan.recipe.objective, key)
    return None if leaf is None else leaf.pick(plan.demo_mode)[0]


def _source(plan, *keys) -> str:
    return "; ".join(getattr(plan.recipe.objective, k).source for k in keys if getattr(plan.recipe.objective, k))


def _gathered(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


# ---------------------------------------------------------------- on-policy distillation (DistillationTrainer)


def verify_distillation(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PROMPTS), gradient_accumulation_steps=1)
    trainer = real_trainer(plan, rows=[{"prompt": p} for p in PROMPTS])
    model, teacher = trainer.model, trainer.teacher_model
    tok = trainer.processing_class
    pid, pm, cid, cm = _rollout(tok, PROMPTS, COMPLETIONS)
    inputs = dict(prompt_ids=pid, prompt_mask=pm, completion_ids=cid, completion_mask=cm, num_items_in_batch=cm.sum())
    theirs = trainer.compute_loss(model, inputs)
    their_grad = grads(model, theirs)
    spec = _objective(plan, "divergence")
    s = torch.log_softmax(_completion_logits(model, pid, pm, cid, cm), -1)
    with torch.no_grad():
        t = torch.log_softmax(_completion_logits(teacher, pid, pm, cid, cm), -1)
    ours = token_mean(ref_divergence(s, t, spec), cm.float())
    eq = _source(plan, "divergence", "aggregation")
    note = (f"{len(PROMPTS)} completions of {cm.sum(1).tolist()} tokens (one without an end), the embedded student and "
            "its trained-further teacher, temperature 1")
    return [compare(f"loss: per-token {spec['kind']}, mean over completion tokens", eq, ours, theirs, note=note),
            compare("gradient of the loss, all student parameters", eq, grads(model, ours), their_grad, note=note)]


# ---------------------------------------------------------------- GKD


def verify_gkd(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PROMPTS), gradient_accumulation_steps=1,
                         max_length=16)
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": c.rstrip("E")}]}
            for p, c in zip(PROMPTS, COMPLETIONS)]
    trainer = real_trainer(plan, rows=rows)
    trainer.current_gradient_accumulation_steps = 1
    model, teacher = trainer.model, trainer.teacher_model
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    theirs = trainer.compute_loss(model, batch)
    their_grad = grads(model, theirs)
    spec = _objective(plan, "divergence")
    ids, att, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    s = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits[:, :-1].float(), -1)
    with torch.no_grad():
        t = torch.log_softmax(teacher(input_ids=ids, attention_mask=att).logits[:, :-1].float(), -1)
    mask = (labels[:, 1:] != -100).float()
    ours = token_mean(ref_divergence(s, t, spec), mask)
    eq = _source(plan, "divergence", "aggregation")
    note = f"dataset outputs of {mask.sum(1).int().tolist()} tokens; temperature 1 in the loss (TRL's GKD always uses 1)"
    checks = [compare(f"loss: per-token {spec['kind']} (beta {spec.get('beta', '-')}), mean over output tokens", eq,
                      ours, theirs, note=note),
              compare("gradient of the loss, all student parameters", eq, grads(model, ours), their_grad, note=note)]
    checks.append(_on_policy_normaliser(trainer, batch))
    return checks


def _on_policy_normaliser(trainer, batch) -> Check:
    """An on-policy micro-batch is divided by its own generated tokens, not by transformers' count of the dataset's
    outputs (which TRL uses). The student's sample is written by hand: longer than the dataset's answers."""
    tok = trainer.processing_class
    sample = [_token_ids(tok, c) for c in ("1919E", "77E", "5050E", "1818E")]
    prompts, prompt_mask = batch["prompts"], batch["prompt_attention_mask"]
    completion_ids, completion_mask = _padded(sample, tok.pad_token_id, False)

    def generate(model, inputs, generation_config):  # stands in for GKDTrainer.generate_on_policy_outputs
        ids = torch.cat([prompts, completion_ids], 1)
        attention = torch.cat([prompt_mask, completion_mask], 1)
        labels = ids.clone()
        labels[attention == 0] = -100
        labels[:, :prompts.shape[1]] = -100
        return ids, attention, labels

    trainer.generate_on_policy_outputs = generate
    trainer.lmbda = 1.0
    counted = trainer._get_num_items_in_batch([batch], batch["input_ids"].device)
    loss = trainer.training_step(trainer.model, dict(batch), counted)
    ids, attention, labels = generate(None, None, None)
    with torch.no_grad():
        s = torch.log_softmax(trainer.model(input_ids=ids, attention_mask=attention).logits[:, :-1].float(), -1)
        t = torch.log_softmax(trainer.teacher_model(input_ids=ids, attention_mask=attention).logits[:, :-1].float(), -1)
    spec = {"kind": "generalized_jsd", "beta": trainer.beta} if 0 < trainer.beta < 1 else {
        "kind": "forward_kl" if trainer.beta == 0 else "reverse_kl"}
    mask = (labels[:, 1:] != -100).float()
    ours = token_mean(ref_divergence(s, t, spec), mask) / trainer.current_gradient_accumulation_steps
    trainer.model.zero_grad(set_to_none=True)
    return compare("on-policy micro-batch: divided by its own generated tokens", "GKD Algorithm 1 with the divergence "
                   "averaged over the student's own output tokens", ours, loss,
                   note=f"{int(mask.sum())} generated tokens; transformers counted {int(counted or 0)} dataset tokens "
                        "(TRL divides by those; paperrl's GKDTrainer does not)")


# ---------------------------------------------------------------- IW-OPD


def verify_iw_opd(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PROMPTS), gradient_accumulation_steps=1)
    trainer = real_trainer(plan, rows=[{"messages": [{"role": "user", "content": p}]} for p in PROMPTS])
    trainer.current_gradient_accumulation_steps = 1
    model, teacher = trainer.model, trainer.teacher_model
    tok = trainer.processing_class
    pid, pm, cid, cm = _rollout(tok, PROMPTS, COMPLETIONS)
    mask = cm.float()
    with torch.no_grad():
        current = _gathered(_completion_logits(model, pid, pm, cid, cm), cid)
        t = _gathered(_completion_logits(teacher, pid, pm, cid, cm), cid)
    gamma = _objective(plan, "iw_opd")
    eq = _source(plan, "iw_opd", "aggregation")
    checks = []
    for label, shift in (("on-policy", 0.0), ("rollout log-probs off by hand", torch.tensor(OLD_SHIFTS)[:cid.shape[1]])):
        old = current - shift
        inputs = dict(input_ids=torch.cat([pid, cid], 1), attention_mask=torch.cat([pm, cm], 1),
                      labels=torch.cat([torch.full_like(pid, -100), torch.where(cm.bool(), cid, -100)], 1),
                      prompts=pid, prompt_attention_mask=pm,
                      rollout_logprobs=torch.cat([torch.zeros(pid.shape), old * mask], 1))
        theirs = trainer.compute_loss(model, inputs)
        their_grad = grads(model, theirs)
        advantages = ((t - old) * mask).detach()
        weights = ref_iw_opd_weights(advantages, mask, gamma)
        logp = _gathered(_completion_logits(model, pid, pm, cid, cm), cid)
        ours = -token_mean(weights * advantages * logp, mask)
        note = (f"advantages log pi_T - log pi_old; weights from {weights[mask.bool()].max().item():.3f} down to "
                f"{weights[mask.bool()].min().item():.3f}")
        checks += [compare(f"loss ({label}): -mean_t sg(r_t A_t) log pi(y_t), r_t = 1 + gamma (1 - prefix |A| share)",
                           eq, ours, theirs, note=note),
                   compare(f"gradient ({label}), all student parameters", eq, grads(model, ours), their_grad)]
    checks.append(_prompt_only_step(trainer))
    return checks


def _prompt_only_step(trainer) -> Check:
    """A training step on prompt-only data (the student writes every output) has a finite loss: TRL 1.16 divides it by
    transformers' count of the dataset's labels, 0 here (NaN); paperrl's IWOPDTrainer by the generated tokens."""
    batch = next(iter(trainer.get_train_dataloader()))
    counted = trainer._get_num_items_in_batch([batch], batch["input_ids"].device)
    loss = trainer.training_step(trainer.model, batch, counted)
    trainer.model.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss).all())
    return Check("prompt-only data: a finite loss (normalised by the generated tokens)", "IW-OPD: a token mean over "
                 "the student's own completion tokens", 0.0 if finite else math.inf, 0.0,
                 note=f"loss {loss.item():.4g}; transformers counted {counted} label tokens (TRL divides by that)")


# ---------------------------------------------------------------- SDFT and SDPO (self-distillation)


def _stub_generation(trainer, completions: list[str]) -> None:
    """TRL's generation step returns the scenario's completions, in order."""
    ids = [_token_ids(trainer.processing_class, c) for c in completions]

    def generate(self, prompt_ids):
        return prompt_ids, [list(ids[i % len(ids)]) for i in range(len(prompt_ids))]

    trainer._generate = types.MethodType(generate, trainer)


def _self_distillation_terms(trainer, batch, spec: dict, skip: int = 0):
    """The reference per-token divergence (and the loss mask) from the scenario's forward passes."""
    pid, pm, cid, cm = batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"]
    student = _completion_logits(trainer.model, pid, pm, cid, cm)
    with torch.no_grad():
        width = cid.shape[1]
        teacher = trainer.teacher_model(input_ids=batch["teacher_input_ids"],
                                        attention_mask=batch["teacher_attention_mask"]).logits[:, -width - 1:-1].float()
    if spec.get("topk"):
        s, t = ref_topk_support(student, teacher, spec["topk"], spec.get("tail", False))
    else:
        s, t = torch.log_softmax(student, -1), torch.log_softmax(teacher, -1)
    mask = cm.float().clone()
    mask[:, :skip] = 0
    return ref_divergence(s, t, spec), mask, _gathered(student, cid)


def verify_sdft(recipe_name: str, sets: list[str]) -> list[Check]:
    skip_paper = _objective_from(recipe_name, sets, "loss_skip") or 0
    checks = _sdft_checks(recipe_name, sets, skip_paper)
    if skip_paper:  # the demo skips none (its answers are 3 tokens): the paper's skip on the scenario's longer ones
        checks += _sdft_checks(recipe_name, sets, skip_paper, forced_skip=skip_paper)
    return checks


def _sdft_checks(recipe_name: str, sets: list[str], skip_paper: int, forced_skip: int | None = None) -> list[Check]:
    extra = {} if forced_skip is None else {"num_loss_tokens_to_skip": forced_skip}
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PROMPTS), gradient_accumulation_steps=1,
                         num_generations=1, max_completion_length=8, **extra)
    rows = [{"prompt": p, "privileged_context": c.rstrip("E")} for p, c in zip(PROMPTS, COMPLETIONS)]
    trainer = real_trainer(plan, rows=rows)
    trainer.current_gradient_accumulation_steps = 1
    _stub_generation(trainer, ["1919E", "77E", "5050E1", "1818E"])  # 3-6 tokens: a skipped prefix leaves a loss
    perturb(trainer.model, 0.05)  # the student moves away from its teacher (an EMA copy, equal at the start)
    batch = trainer._prepare_inputs(rows)
    theirs = trainer.compute_loss(trainer.model, batch)
    their_grad = grads(trainer.model, theirs)
    spec = _objective(plan, "divergence")
    skip = (_objective(plan, "loss_skip") or 0) if forced_skip is None else forced_skip
    d, mask, _ = _self_distillation_terms(trainer, batch, spec, skip)
    ours = sequence_mean(d, mask)
    eq = _source(plan, "divergence", "loss_skip", "aggregation")
    prompt = trainer.processing_class.decode(batch["teacher_input_ids"][0][batch["teacher_attention_mask"][0].bool()])
    note = (f"per-token {spec['kind']}{' on the top-' + str(spec['topk']) if spec.get('topk') else ''}, first {skip} "
            f"completion tokens skipped (the paper's {skip_paper}); teacher input of the first row: {prompt!r}")
    label = "" if forced_skip is None else f" (the paper's first {forced_skip} completion tokens skipped)"
    return [compare(f"loss: per-token divergence to the demonstration-conditioned teacher, sequence means{label}", eq,
                    ours, theirs, note=note),
            compare(f"gradient of the loss, all student parameters{label}", eq, grads(trainer.model, ours), their_grad)]


def _objective_from(recipe_name, sets, key):
    from paperrl import recipe as recipes

    leaf = getattr(recipes.load(recipe_name, sets).objective, key)
    return None if leaf is None else leaf.value


def verify_sdpo(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(SDPO_COMPLETIONS),
                         gradient_accumulation_steps=1, num_generations=GROUP, max_completion_length=6)
    rows = [{"prompt": p, "solution": a} for p, a in SDPO_PROMPTS for _ in range(GROUP)]

    def exact(completions, solution, **kwargs):
        return [float(c.strip() == s) for c, s in zip(completions, solution)]

    exact.__name__ = "exact_answer"
    trainer = real_trainer(plan, reward_funcs=[exact], rows=rows)
    trainer.current_gradient_accumulation_steps = 1
    _stub_generation(trainer, SDPO_COMPLETIONS)
    perturb(trainer.model, 0.05)
    batch = trainer._prepare_inputs(rows)
    rewards = batch["rewards"].tolist()
    teacher_of = _objective(plan, "self_teacher")
    expected = ref_self_teacher(rewards, GROUP, teacher_of["threshold"], teacher_of["exclude_self"])
    checks = [compare("self-teacher: the completions with a successful sibling are distilled", _source(plan, "self_teacher"),
                      torch.tensor([float(j is not None) for j in expected]), batch["self_distillation_mask"].float().cpu(),
                      note=f"rewards {rewards}; teacher sibling of each completion {expected}")]
    # one micro-batch off-policy: the importance weight sg(min(pi/pi_old, cap)) is exercised (e^1, e^1.2 capped)
    pid, pm, cid, cm = batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"]
    with torch.no_grad():
        current = _gathered(_completion_logits(trainer.model, pid, pm, cid, cm), cid)
    batch["old_per_token_logps"] = current - torch.tensor(OLD_SHIFTS)[:cid.shape[1]]
    theirs = trainer.compute_loss(trainer.model, batch)
    their_grad = grads(trainer.model, theirs)
    spec = _objective(plan, "divergence")
    d, mask, logp = _self_distillation_terms(trainer, batch, spec)
    cap = _objective(plan, "is_cap")
    weight = torch.exp((logp - batch["old_per_token_logps"]).detach().clamp(-20, 20)).clamp(max=cap)
    mask = mask * torch.tensor([float(j is not None) for j in expected])[:, None]
    eq = _source(plan, "divergence", "is_cap")
    trl_mean = sequence_mean(d * weight, mask)  # TRL's aggregation, to check the divergence and weights exactly
    checks += [compare("loss: top-k divergence to the self-teacher x sg(min(ratio, cap)), sequence means over all "
                       "completions", eq, trl_mean, theirs,
                       note=f"top-{spec.get('topk')} of the student{' + tail bucket' if spec.get('tail') else ''}, "
                            f"beta {spec.get('beta')}; ratios e^1 and e^1.2 capped at {cap}"),
               compare("gradient of the loss, all student parameters", eq, grads(trainer.model, trl_mean), their_grad)]
    authors = token_mean(d * weight, mask)
    deviation = compare("aggregation: the authors' token mean over distilled tokens vs TRL's mean of sequence means",
                        _source(plan, "aggregation"), authors, theirs,
                        note="TRL averages per-sequence means over all completions, counting those without a "
                             "self-teacher as 0; the authors divide the distilled tokens' sum by their count")
    from paperrl.verify.policy import _bounded

    checks.append(_bounded(deviation, "sdpo_aggregation", plan.recipe.deviations))
    return checks
