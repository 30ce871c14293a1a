"""`python -m simreal.cli`: the `simreal` command."""

import sys

from simreal.cli import main

sys.exit(main())
