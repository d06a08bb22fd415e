"""Where the data lives by default: the book's layout under data-unversioned/ (the LUNA16
release unpacked in part2/luna, the chunk store beside it), and how many loader workers read
it. Standard library only, so that the options (and `luna-tui --help`) can use it without
importing the data path."""

import os

DEFAULT_DATA_DIR = "data-unversioned/part2/luna"
DEFAULT_CACHE_DIR = "data-unversioned/cache"


def default_num_workers() -> int:
    """--num-workers' default (and what `luna-tui check` says): one a core, at most 8."""
    return min(os.cpu_count() or 1, 8)
