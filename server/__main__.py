"""`python -m server` runs the fraudwatch command."""

import sys

from server.cli import main

sys.exit(main())
