"""``python -m load run|bench ...``: see load/README.md or ``python -m load --help``."""

import sys

from load.commands.cli import main

sys.exit(main())
