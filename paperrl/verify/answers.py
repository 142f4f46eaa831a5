"""Log-probabilities of written answers, one sequence at a time (no padding, no batching): what the verifiers of
the kto, reward, orpo, tpo and online-dpo kinds compute independently of how TRL batches and masks."""

from __future__ import annotations

import torch


def answer_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_logp(model, tokenizer, prompt: str, answer: str) -> tuple[torch.Tensor, int]:
    """(sum_t log pi(y_t | x, y_<t), |y|) for y = answer + EOS after the prompt x."""
    p, y = answer_ids(tokenizer, prompt), answer_ids(tokenizer, answer) + [tokenizer.eos_token_id]
    logits = model(input_ids=torch.tensor([p + y])).logits[0, len(p) - 1:-1].float()
    token = torch.log_softmax(logits, -1).gather(-1, torch.tensor(y)[:, None]).squeeze(-1)
    return token.sum(), len(y)


def sequence_nll(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Causal-LM negative log-likelihood of whole texts (+ EOS), every token after the first, averaged over all
    the batch's tokens."""
    total, count = 0.0, 0
    for text in texts:
        ids = answer_ids(tokenizer, text) + [tokenizer.eos_token_id]
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
        total = total - logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum()
        count += len(ids) - 1
    return total / count
