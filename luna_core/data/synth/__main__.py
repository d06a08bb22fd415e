"""`python -m luna_core.data.synth`."""

import sys

from luna_core.data.synth.command_line import main

if __name__ == "__main__":
    sys.exit(main())
