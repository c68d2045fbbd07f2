"""Entry point for `python -m simulator`."""

from simulator.client import main

raise SystemExit(main())
