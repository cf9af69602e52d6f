#!/usr/bin/env bash
# The demo's tuned lens (src/evolens/assets/demo/tuned-lens) and the lens comparison in docs/tuned-lens.md.
# Scenes: shapes-world seeds from 40,000,000 for the lens (never used elsewhere: the projector trained on
# 0..2499, validated on 5,000,000.., evaluated on 10,000,000..; the study's results use 30,000,000..).
#   bash scripts/demo_lens.sh [N_COMPARE]        (default 24 descriptions; outputs in runs/)
# Both steps run under `nice -n 15` on 2 threads (so they can share a machine); on an idle 2-core machine
# step 1 took 2.4 min with the recipe-2 demo model (issue 13).
set -euo pipefail
N_COMPARE=${1:-24}
EVOLENS=${EVOLENS:-.venv/bin/evolens}
ASSET=src/evolens/assets/demo/tuned-lens

# 1. train: 32 scenes x the shapes source's two prompts, 32 new tokens each, 20% of the scenes held out
nice -n 15 $EVOLENS train-lens --model demo --source shapes --limit 32 --seed 40000000 --max-new-tokens 32 \
    --generation-batch-size 16 --steps 100 --batch-size 32 --params-dtype bfloat16 --threads 2 \
    --out runs/demo-lens-32
mkdir -p $ASSET
cp runs/demo-lens-32/config.json runs/demo-lens-32/params.pt runs/demo-lens-32/manifest.json $ASSET/

# 2. the study's descriptions (seeds from 30,000,000) under the logit lens and the tuned lens, same tokens:
#    stages with bootstrap intervals, KL to the final layer, hallucinated words under both lenses
nice -n 15 $EVOLENS run --model demo --source shapes --limit "$N_COMPARE" --seed 30000000 \
    --prompt "Describe this image." --max-new-tokens 64 --batch-size 8 --no-keep-hidden --no-skip \
    --hallucination --compare-lens tuned --out runs/claims
$EVOLENS hallucination trace --trace runs/claims/lens-compare/trace --out runs/claims/hallucination-tuned
