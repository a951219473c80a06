"""`python -m mars_core`: the CLI (mars_core/cli)."""

import sys

from mars_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
