#!/bin/sh
# The any-(N, K) samplers against FPS, random and the per-(N, K) samplers (issue #18).
# Run from the repository root after bundling (Resources/Models/sampler_<prior>_any_t100.pt);
# every evaluate call resumes from its cases.csv. One thread per process; the two families can
# run side by side (FAMILY=vertebra-anatomical sh ...; FAMILY=kidney-anatomical sh ...).
# The fit is the product's fast fit (paired: every sampler of a case gets the same fit).
set -e
F=${FAMILY:-vertebra-anatomical}
OUT=${OUT_ROOT:-results/learned_any_nk}/$F                # the lead-anchor samplers: OUT_ROOT=results/learned_any_nk/lead
GRID=4x9,4x11,4x13,8x9,8x11,8x13,12x9,12x11,12x13
RANGE=1x9,2x9,16x9,32x9,64x9,8x5,8x7,8x15,8x21
SAMPLERS=${SAMPLER_DIR:+--sampler-dir $SAMPLER_DIR}      # the trained any samplers: results/learned_any_nk/models/<F>
python -m PatchSamplerLib evaluate --family $F --data-seed 1 --count 15 --configs $GRID --t 100 \
    --samplers learned,fps,random --runs 3 --fit fast --prior $F --figures --threads 1 $SAMPLERS --out $OUT/grid
python -m PatchSamplerLib evaluate --family $F --data-seed 1 --count 4 --configs $RANGE --t 100 \
    --samplers learned,fps --runs 2 --fit fast --prior $F --threads 1 $SAMPLERS --out $OUT/range
if [ -n "$PER_NK_DIR" ]; then   # a folder with the per-(N, K) samplers as sampler_n<N>_k<K>_t100.pt
    python -m PatchSamplerLib evaluate --family $F --data-seed 1 --count 15 --configs $GRID --t 100 \
        --samplers learned --fit fast --prior $F --sampler-dir "$PER_NK_DIR" --threads 1 --out $OUT/per_nk
    python results/learned_any_nk/compare.py $OUT/grid/cases.csv $OUT/per_nk/cases.csv $F > $OUT/any_vs_per_nk.md
fi
