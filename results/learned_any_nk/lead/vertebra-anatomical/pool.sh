# The any-(N, K) sampler against the per-(4, 9) sampler over both held-out sets (15 vertebrae of
# family seed 1 and 20 of seed 3; case names differ, so the rows are simply joined). From the
# repository root: sh results/learned_any_nk/lead/vertebra-anatomical/pool.sh
d=results/learned_any_nk/lead/vertebra-anatomical
(cat $d/grid/cases.csv; tail -n +2 $d/seed3/cases.csv) > /tmp/any_pooled.csv
(cat $d/per_nk/cases.csv; tail -n +2 $d/seed3_per_nk/cases.csv) > /tmp/per_pooled.csv
python results/learned_any_nk/compare.py /tmp/any_pooled.csv /tmp/per_pooled.csv "vertebra-anatomical, family seeds 1 and 3 pooled (35 shapes)"
