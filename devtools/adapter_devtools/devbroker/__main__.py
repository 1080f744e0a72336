"""`python -m adapter_devtools.devbroker …`: the same as `adapter devbroker …`."""

import sys

from adapter_devtools.devbroker.command import main

sys.exit(main())
