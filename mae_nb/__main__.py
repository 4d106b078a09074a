"""``python -m mae_nb``: the ``mae-nb`` command, for when its script is not on the PATH."""

import sys

from mae_nb.cli import main

sys.exit(main())
