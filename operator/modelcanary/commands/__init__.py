"""One module per `modelcanary` command; each has `add(commands)` that registers it.

Each command spells out its own flags, even one another command takes too (`--repo`,
`--samples`, `--metric`): the help a user reads stays beside the command it documents, so
`add` functions look alike on purpose. What they share is in `arguments`."""
