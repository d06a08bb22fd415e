"""The book's annotations_with_malignancy.csv: read as it is, and a clear one-line error naming
the file and line for anything else."""

from __future__ import annotations

import pytest

from luna_core.data.csvread import read_malignancy
from luna_core.errors import LunaInputError

UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"
HEAD = "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,len_mal_details,mal_details\n"


def test_reads_the_books_rows(tmp_path):
    path = tmp_path / "annotations_with_malignancy.csv"
    path.write_text(HEAD + f"{UID},-128.7,-175.3,-298.4,5.65,False,4,\"[2, 1, 1, 2]\"\n"
                           f"{UID},103.8,-211.9,-227.1,4.22,True,1,[4]\n\n")
    got = read_malignancy(path)
    assert got == {UID: [(-128.7, -175.3, -298.4, 5.65, False),
                         (103.8, -211.9, -227.1, 4.22, True)]}


@pytest.mark.parametrize("row, line, said", [
    (f"{UID},1,2,3,4,maybe", 3, "mal_bool True or False"),
    (f"{UID},1,2,nan,4,True", 3, "finite numbers"),
    (f"{UID},1,2,3", 3, "row has 4 field(s)"),
    ("../etc,1,2,3,4,True", 3, "invalid seriesuid"),
])
def test_a_bad_row_is_named_with_its_line(tmp_path, row, line, said):
    path = tmp_path / "annotations_with_malignancy.csv"
    path.write_text(HEAD + f"{UID},1,2,3,4,True\n" + row + "\n")
    with pytest.raises(LunaInputError) as err:
        read_malignancy(path)
    text = str(err.value)
    assert str(path) in text and f":{line}" in text and said in text and "\n" not in text


def test_a_missing_column_or_file_is_named(tmp_path):
    path = tmp_path / "annotations_with_malignancy.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    with pytest.raises(LunaInputError, match="mal_bool"):
        read_malignancy(path)
    with pytest.raises(LunaInputError) as err:
        read_malignancy(tmp_path / "nothing.csv")
    assert "nothing.csv" in str(err.value)
