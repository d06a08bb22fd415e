"""Where the data lives by default: the book's layout under data-unversioned/ (the LUNA16
release unpacked in part2/luna, the converted CT cache beside it). Standard library only, so
that the options (and `luna-tui --help`) can use it without importing the data path."""

DEFAULT_DATA_DIR = "data-unversioned/part2/luna"
DEFAULT_CACHE_DIR = "data-unversioned/cache"
