#!/usr/bin/env bash
# GPU smoke test: the GPU path end to end on one NVIDIA GPU with no network.
# gspo and dapo on a random-weight Qwen2.5-0.5B-shaped model in bf16, with vLLM colocate when it
# installs; records tokens per second and peak GPU memory in bench/GPU.md. CI never runs it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/gpu-smoke}  # under the repository (ignored by git), on any machine
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# A real-size model that needs no download: Qwen2.5-0.5B's shape, random weights, the demo tokenizer.
$PY - "$OUT/model" <<'PYCODE'
import sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM, AutoTokenizer
from paperrl import demo
tok = AutoTokenizer.from_pretrained(demo.ensure_model())
cfg = Qwen2Config(vocab_size=len(tok), hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                  tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
PYCODE

VLLM=""
if $PY -m pip install -q "vllm" >/dev/null 2>&1 && $PY -c "import vllm" 2>/dev/null; then VLLM="--vllm colocate"; fi
$PY -c "import json; [print(json.dumps({'i': i, 'prompt': f'{i}+{i+1}=', 'solution': str(2*i+1)})) for i in range(2000)]" \
  | $PY -c "import sys, json; open('$OUT/data.jsonl','w').write(''.join(l for l in sys.stdin))"

{
  echo "# GPU smoke ($(date +%Y-%m-%d), $(cat "$OUT/gpu.txt"))"
  echo
  echo "| recipe | vLLM | steps | wall (s) | tokens / s (prompt + completion) | peak GPU memory (GB) | bf16 |"
  echo "|---|---|---|---|---|---|---|"
} > "$OUT/GPU.md"
for recipe in gspo dapo; do
  for vllm in "" "$VLLM"; do
    [ "$vllm" = "" ] || [ -n "$VLLM" ] || continue
    run="$OUT/$recipe${vllm:+-vllm}"
    start=$(date +%s.%N)
    $PY -m paperrl "$recipe" --model "$OUT/model" --dataset "$OUT/data.jsonl" --reward bench/informative_reward.py:fractional \
      --max-steps 20 --set max_completion_length=256 --set batch.prompts_per_rollout=16 --set batch.completions_per_step=64 \
      --set batch.completions_per_prompt=8 --set dynamic_sampling.metric=fractional --set logging_steps=1 \
      --per-device-batch-size 16 $vllm --output-dir "$run" --overwrite > "$run.log" 2>&1 || { echo "$recipe failed: $(tail -3 "$run.log")"; continue; }
    end=$(date +%s.%N)
    $PY - "$run" "$recipe" "${vllm:-no}" "$start" "$end" >> "$OUT/GPU.md" <<'PYCODE'
import json, sys, torch
run, recipe, vllm, start, end = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
tokens = max((r.get("num_tokens", 0) for r in rows), default=0)
cfg = json.load(open(f"{run}/paperrl.json"))["config"]
wall = float(end) - float(start)
peak = json.load(open(f"{run}/summary.json")).get("peak_gpu_memory_gb")
print(f"| {recipe} | {vllm} | {len([r for r in rows if 'loss' in r])} | {wall:.0f} | {tokens / wall:.0f} | "
      f"{peak or 'see log'} | {cfg.get('bf16')} |")
PYCODE
  done
done
cp "$OUT/GPU.md" bench/GPU.md 2>/dev/null || true
cat "$OUT/GPU.md"
