import sys

from luna_tui.cli import main

sys.exit(main())
