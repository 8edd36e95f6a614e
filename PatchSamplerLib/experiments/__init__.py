"""The thesis's experiments [T ch. 5]: the evaluation grid (`evaluation`), its records, tables and
paired tests (`tables`), cross-validation with per-fold samplers (`crossval`), where their jobs
run -- this process or a Ray cluster (`executors`) --, sparse-slice
evaluation (`slice_evaluation`), and the cost benchmarks (`benchmark`, `benchmark_training`,
`memory`)."""
