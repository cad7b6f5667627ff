"""``python -m load run|bench ...``: see load/README.md or ``python -m load --help``."""

import sys

from load.cli import main

sys.exit(main())
