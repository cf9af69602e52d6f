#!/usr/bin/env bash
# The experiments behind the "Results on the demo model" tables (README, docs/interventions.md).
# Scenes: shapes-world seeds from 30,000,000, never used in training (0..2499), validation (5,000,000..),
# the quality eval (10,000,000..) or the bundled demo scenes.
#   bash scripts/demo_results.sh [N_TRACE] [N_SKIP]      (defaults 120 and 60; outputs in runs/results)
set -euo pipefail
N_TRACE=${1:-120}
N_SKIP=${2:-60}
SEED=30000000
OUT=runs/results
EVOLENS=${EVOLENS:-.venv/bin/evolens}

# descriptions traced at every layer, stages detected, hallucinations scored against the scenes
$EVOLENS run --model demo --source shapes --limit "$N_TRACE" --seed $SEED --prompt "Describe this image." \
    --max-new-tokens 64 --batch-size 8 --no-keep-hidden --no-skip --hallucination --out $OUT/describe
# 48 descriptions scored again under the three nulls: the stages found against them
$EVOLENS run --model demo --source shapes --limit 48 --seed $SEED --prompt "Describe this image." \
    --max-new-tokens 64 --batch-size 8 --no-keep-hidden --no-skip --no-hallucination \
    --null no-image --null blank --null shuffled --out $OUT/describe-nulls
# the colour question, hidden states kept for the feature-space views and the probes; the answers scored
# again under the three nulls (the image effect)
$EVOLENS run --model demo --source shapes --limit 48 --seed $SEED --prompt "What is the color of the shape?" \
    --max-new-tokens 12 --batch-size 8 --projection tsne --projection pca --no-skip --no-hallucination \
    --answer red,orange,yellow,green,blue,purple,pink,brown --null no-image --null blank --null shuffled \
    --out $OUT/color
# faithful vs hallucinated words at the critical and mutation layers
$EVOLENS hallucination trace --trace $OUT/describe/trace --out $OUT/hallucination
# layer skipping: the detected stages and random controls of the same sizes
$EVOLENS skip --model demo --shapes "$N_SKIP" --shapes-seed $SEED --plan stages --trace $OUT/describe/trace \
    --max-new-tokens 64 --seeds 2 --out $OUT/skip
# SmolLM2 on text alone (demo-text: the decoder without the demo's LoRA updates): each scene's caption
# given in words, then the same request
mapfile -t TEXT_ARGS < <(.venv/bin/python - <<'PY'
import random
from evolens.data.shapes.text import describe
from evolens.data.shapes.world import sample_scene
for seed in range(30_000_000, 30_000_024):
    print("-p")
    print(f"Here is a picture: {describe(sample_scene(seed), random.Random(seed))} Describe this image.")
PY
)
$EVOLENS trace --model demo-text "${TEXT_ARGS[@]}" --max-new-tokens 64 --batch-size 8 --out $OUT/text/trace
$EVOLENS compare $OUT/describe/trace $OUT/text/trace --labels "image (demo VLM),text only (SmolLM2)" \
    --out $OUT/compare
# small skips: three layers late in the stabilization stage, and three in the mutation stage
for RANGE in 17-19 27-29; do
    $EVOLENS skip --model demo --shapes 24 --shapes-seed $SEED --skip $RANGE --max-new-tokens 64 --seeds 2 \
        --out $OUT/skip-$RANGE
done
# layer-mix (DeCo-style) decoding: the anchor layers scaled from DeCo's 20-28 of 32 to 19-26 of 30
$EVOLENS hallucination decode --model demo --shapes "$N_SKIP" --shapes-seed $SEED --layers 19-26 \
    --alpha 0.6 --top-k 10 --max-new-tokens 64 --out $OUT/decode
