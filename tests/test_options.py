"""The training options: which were given on the command line (a resumed run takes the others
from its checkpoint), without argparse internals."""

from __future__ import annotations

from luna_core.train.options import DEFAULT_DATA_DIR, parse_options


def test_options_given_are_told_apart_from_defaults_even_when_zero_or_false():
    options, given = parse_options(["--num-workers", "0", "--seed", "0", "--headless",
                                    "--lr", "0.01", "mine"])
    assert given == {"num_workers", "seed", "headless", "lr", "comment"}
    assert (options.num_workers, options.seed, options.comment) == (0, 0, "mine")
    options, given = parse_options([])
    assert given == set()
    assert options.data_dir == DEFAULT_DATA_DIR and options.comment == "dlwpt"
