"""`--dry-run --format python`: the resolved recipe as a standalone plain-TRL script (no paperrl import).

The script holds the resolved config values, and copies of the code paperrl adds on top of TRL
(reward wrappers, the BEMA callback, the dynamic-sampling and normaliser subclasses, the demo
task), taken from paperrl's own source so that the two can never drift apart.
"""

from __future__ import annotations

import inspect
import pprint
import textwrap

from paperrl import demo, rewards
from paperrl.resolve import Plan


def _source(*objects) -> str:
    return "\n\n".join(textwrap.dedent(inspect.getsource(o)).strip() for o in objects)


def _module_body(module) -> str:
    """A module's code without its docstring and `from __future__` line."""
    lines = inspect.getsource(module).splitlines()
    body = "\n".join(line for line in lines if not line.startswith("from __future__"))
    doc = module.__doc__ or ""
    return body.replace(f'"""{doc}"""', "", 1).strip()


def _rewards(plan: Plan) -> tuple[str, str]:
    code, calls = [], []
    helpers = False
    for spec in plan.rewards:
        name = spec["name"]
        if name.startswith("model:"):
            calls.append(repr(name[len("model:"):]))
        elif ":" in name:
            target, func = name.rsplit(":", 1)
            if target.endswith(".py") or "/" in target:
                code.append(f"import importlib.util as _ilu\n_spec = _ilu.spec_from_file_location('user_reward', {target!r})\n"
                            f"_user = _ilu.module_from_spec(_spec)\n_spec.loader.exec_module(_user)\n{func} = _user.{func}")
            else:
                code.append(f"from {target} import {func}")
            calls.append(f"{func}(**{spec['args']!r})" if spec["args"] else func)
        else:
            helpers = True
            code.append(_source(rewards.BUILTIN[name]))
            calls.append(f"{name}(**{spec['args']!r})")
    if helpers:
        code.insert(0, _source(rewards._text, rewards._as_chat, rewards._rescale))
    return "\n\n".join(code), "[" + ", ".join(calls) + "]"


def _data(plan: Plan) -> str:
    if plan.dataset and plan.dataset.startswith("demo:"):
        return "\n\n".join([
            "import random",
            f"SEED, MAX_OPERAND, HELD_OUT = {demo.SEED}, {demo.MAX_OPERAND}, {demo.HELD_OUT}",
            _source(demo._pairs, demo._wrong, demo.rows),
            f"train_dataset = Dataset.from_list(rows({plan.recipe.trainer!r}, 'train'))",
        ])
    from pathlib import Path

    from paperrl.data import _FORMATS

    path = Path(plan.dataset)
    if path.suffix in _FORMATS:
        load = f"load_dataset({_FORMATS[path.suffix]!r}, data_files={str(path)!r}, split='train')"
    else:
        load = f"load_dataset({plan.dataset!r}, {plan.options.subset!r}, split={plan.options.split or 'train'!r})"
    lines = [f"train_dataset = {load}"]
    mapping = dict(plan.recipe.dataset.columns) if plan.recipe.dataset and plan.recipe.dataset.name == plan.dataset else {}
    mapping.update(dict(item.split("=", 1) for item in plan.options.columns))
    for name, column in mapping.items():
        if "." in column:
            top, *keys = column.split(".")
            lines.append(f"train_dataset = train_dataset.map(lambda v: {{{name!r}: v{''.join(f'[{k!r}]' for k in keys)}}}, "
                         f"input_columns={top!r})")
        elif name != column:
            lines.append(f"train_dataset = train_dataset.rename_column({column!r}, {name!r})")
    return "\n".join(lines)


def script(plan: Plan) -> str:
    config_module, config_class = plan.kind.config_class.split(":")
    trainer_module, trainer_class = plan.kind.trainer_class.split(":")
    reward_code, reward_list = _rewards(plan) if plan.kind.online else ("", "[]")
    parts = [
        "#!/usr/bin/env python",
        f'"""Plain TRL for the paperrl recipe {plan.recipe.name}: {plan.recipe.title} (arXiv {plan.recipe.arxiv}).\n\n'
        'Exported by `paperrl ... --dry-run --format python`. It imports no paperrl code.\n'
        'Run it with `python this_script.py`; `--print-config` prints the resolved TRL config and exits."""',
        "import json\nimport math\nimport re\nimport sys\nimport warnings\nfrom pathlib import Path\n\nimport torch\nfrom datasets import Dataset, load_dataset\n"
        "from transformers import AutoTokenizer, TrainerCallback\n"
        f"with warnings.catch_warnings():\n    warnings.simplefilter('ignore')\n"
        f"    from {config_module} import {config_class}\n    from {trainer_module} import {trainer_class}",
        f"MODEL = {plan.model!r}\nCONFIG = {pprint.pformat(plan.config, sort_dicts=False)}",
    ]
    if reward_code:
        parts.append("# reward functions, as paperrl defines them\n" + reward_code)
    callbacks = "[]"
    if plan.callbacks:
        from paperrl.callbacks import BEMA

        parts.append("# BEMA, paperrl's implementation (TRL 1.16's BEMACallback fails on frozen/PEFT models)\n"
                     + _source(BEMA))
        callbacks = "[" + ", ".join(f"BEMA(**{c['args']!r})" for c in plan.callbacks) + "]"
    trainer_expr = trainer_class
    if plan.dynamic_sampling:
        from paperrl import sampling

        parts.append("# DAPO dynamic sampling, paperrl's subclass of TRL's trainer\n" + _module_body(sampling))
        trainer_expr = f"with_dynamic_sampling({trainer_expr}, {plan.dynamic_sampling!r})"
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        from paperrl import normaliser

        parts.append("# DAPO Eq. 12's exact token normaliser, paperrl's subclass\n" + _module_body(normaliser))
        trainer_expr = f"with_exact_token_normaliser({trainer_expr})"
    parts.append("# data\n" + _data(plan))
    reward_arg = f"\n        reward_funcs={reward_list}," if plan.kind.online else ""
    chat = plan.recipe.chat_template is None or bool(plan.recipe.chat_template.value)
    parts.append(textwrap.dedent(f'''\
        def main():
            args = {config_class}(**CONFIG)
            if "--print-config" in sys.argv:
                print(json.dumps(args.to_dict(), default=str))
                return
            tokenizer = AutoTokenizer.from_pretrained(MODEL)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            data = train_dataset
            if {chat} and getattr(tokenizer, "chat_template", None) and isinstance(data[0].get("prompt"), str):
                data = data.map(lambda p: {{"prompt": [{{"role": "user", "content": p}}]}}, input_columns="prompt")
            trainer = ({trainer_expr})(
                model=MODEL, args=args, train_dataset=data, processing_class=tokenizer,{reward_arg}
                callbacks={callbacks},
            )
            trainer.train()
            trainer.save_model(args.output_dir + "/model")


        if __name__ == "__main__":
            main()'''))
    return "\n\n\n".join(parts) + "\n"
