"""What a person looks at: figures (`figures`: error slices, patch placement, Dice surfaces) and
the files of one run (`outputs`: reconstruction, errors, patches.json, metrics.json, overview)."""
