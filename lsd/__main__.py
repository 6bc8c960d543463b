"""`python -m lsd` runs the same CLI as the `lsd` console script."""

import sys

from lsd.cli import main

sys.exit(main())
