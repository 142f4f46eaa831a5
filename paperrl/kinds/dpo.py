"""DPO and its family (IPO, Robust DPO, RPO, ...): offline preference pairs against a frozen reference."""

from paperrl import demo
from paperrl.kinds import Task, TrainerKind

PREFERENCES = Task("addition-preferences", demo.preference_row, demo.PREFERENCE_ACCURACY, demo.preference_accuracy)

KIND = TrainerKind(
    name="dpo",
    config_class="trl.trainer.dpo_config:DPOConfig",
    trainer_class="trl.trainer.dpo_trainer:DPOTrainer",
    columns=(("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    task=PREFERENCES,
    demo=demo.OFFLINE,
    verifier="paperrl.verify.preference:verify_preference",
    closed=("loss_type",),
    reference="always",
    trainer_arguments="paperrl.kinds.dpo:trainer_arguments",
)


def trainer_arguments(plan, tokenizer) -> dict:
    """A recipe with `reference_free` (SLiC-HF) gets a reference whose log-probabilities are all 0, so that TRL's
    log-ratios log pi - log pi_ref are the policy's log-likelihoods: TRL's hinge becomes SLiC's loss exactly."""
    free = plan.recipe.reference_free
    return {"ref_model": _zero_reference_class().build()} if free is not None and free.value else {}


def _zero_reference_class():
    import types

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    class ZeroReference(Qwen2ForCausalLM):
        """Stands in for pi_ref with log pi_ref(y_t | ...) = 0 for every token. DPOTrainer only reads its config and
        output embeddings when it patches in its fused head, and calls it for `log_probs`; a 2-wide, one-layer model
        is enough for that, whatever the policy's architecture."""

        def __call__(self, input_ids=None, **kwargs):
            return types.SimpleNamespace(log_probs=torch.zeros(input_ids.shape[0], input_ids.shape[1] - 1,
                                                               device=input_ids.device))

        @classmethod
        def build(cls):
            return cls(Qwen2Config(vocab_size=2, hidden_size=2, intermediate_size=2, num_hidden_layers=1,
                                   num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=2))

    return ZeroReference


def __getattr__(name):  # ZeroReference is built on first use: importing this module must not import torch
    if name == "ZeroReference":
        return _zero_reference_class()
    raise AttributeError(name)
