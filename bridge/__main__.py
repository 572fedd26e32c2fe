"""Allow `python -m bridge` as an alias of the `oscar-bridge` console script."""

from bridge.cli import main

raise SystemExit(main())
