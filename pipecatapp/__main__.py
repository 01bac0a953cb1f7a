"""``python -m pipecatapp``."""

import sys

from pipecatapp.cli import main

sys.exit(main())
