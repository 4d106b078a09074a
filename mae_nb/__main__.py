import sys

from mae_nb.cli import main

sys.exit(main())
