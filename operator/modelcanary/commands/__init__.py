"""One module per `modelcanary` command; each has `add(commands)` that registers it."""
