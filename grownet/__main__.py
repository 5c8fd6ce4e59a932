"""`python -m grownet` (also what `torchrun -m grownet` runs)."""

import sys

from grownet.cli import main

sys.exit(main())
