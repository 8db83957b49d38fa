"""`python -m modelcanary` runs the command-line interface."""

from modelcanary.cli import main

raise SystemExit(main())
