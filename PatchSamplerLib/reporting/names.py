"""The names of the files a command writes into its output folder. Kept free of heavy imports:
the command line checks them against the command's input files before any work
(`cli.arguments.check_inputs_kept`)."""

RUN_FILES = ("reconstruction.nii.gz", "errors.nii.gz", "patches.json", "metrics.json", "overview.png")
SPARSE_FILES = ("reconstruction.nii.gz", "sparse_input.nii.gz", "errors.nii.gz", "metrics.json", "overview.png")
