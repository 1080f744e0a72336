"""`python -m adapter.devbroker …`: the same as `adapter devbroker …`."""

import sys

from adapter.devbroker.command import main

sys.exit(main())
