"""`luna-tui check`: the preflight on a good set, missing series, a truncated .raw, an empty
folder; read only."""

from __future__ import annotations

import os

from luna_core.data.candidates import clear_cache, get_candidate_info_list
from luna_core.data.chunkstore import prepare_store, series_centres
from luna_tui.cli import main as cli_main

from .lunadata import UID_C, make_dataset_dir, write_candidates


def _check(capsys, data, cache) -> tuple[int, list[str]]:
    clear_cache()
    code = cli_main(["check", "--data-dir", str(data), "--cache-dir", str(cache)])
    return code, capsys.readouterr().out.splitlines()


def _files(root) -> list[str]:
    return sorted(os.path.join(d, f) for d, _s, fs in os.walk(root) for f in fs)


def test_a_good_set_can_start_and_says_what_a_run_will_use(tmp_path, capsys):
    data, uids, cands = make_dataset_dir(tmp_path / "data", n_series=2, per_series=15)
    before = _files(tmp_path)
    code, out = _check(capsys, data, tmp_path / "cache")
    assert code == 0 and out[0] == "a run can start"
    text = "\n".join(out)
    assert "series    2 of the 2 listed are on disk" in text
    assert "headers   2 read, .raw sizes match" in text
    assert "samples   27 training (" in text and "3 validation (" in text
    assert "0 series ready, 2 to build, 0 stale" in text
    assert f"{30:,} chunks" in text or "chunks =" in text
    from luna_core.data.default_dirs import default_num_workers
    # the workers it names are the run's default (it suggested cores - 1 against it)
    assert "device    " in text and f"--num-workers {default_num_workers()} (the default" in text
    assert _files(tmp_path) == before                    # read only: nothing written

    clear_cache()
    centres = series_centres(get_candidate_info_list(data))
    prepare_store(data, tmp_path / "cache", {uids[0]: centres[uids[0]]})
    code, out = _check(capsys, data, tmp_path / "cache")
    assert code == 0 and "1 series ready, 1 to build, 0 stale" in "\n".join(out)


def test_series_listed_but_not_on_disk_are_counted_and_a_run_still_starts(tmp_path, capsys):
    data, uids, cands = make_dataset_dir(tmp_path / "data", n_series=2, per_series=15)
    write_candidates(data, list(cands) + [(UID_C, 0.0, 0.0, 0.0, 0)])
    code, out = _check(capsys, data, tmp_path / "cache")
    assert code == 0
    assert "series    2 of the 3 listed are on disk" in "\n".join(out)


def test_a_truncated_raw_is_named_first_and_exit_2(tmp_path, capsys):
    data, uids, _ = make_dataset_dir(tmp_path / "data", n_series=2, per_series=15)
    raw = data / "subset1" / f"{uids[1]}.raw"
    raw.write_bytes(raw.read_bytes()[:-10])
    code, out = _check(capsys, data, tmp_path / "cache")
    assert code == 2
    assert out[0].startswith("cannot start a run: ") and str(raw) in out[0]
    assert "truncated" in out[0]
    assert "1 bad (named above)" in "\n".join(out)


def test_an_empty_folder_cannot_start_and_says_why_first(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out = _check(capsys, tmp_path / "empty", tmp_path / "cache")
    assert code == 2
    assert out[0].startswith("cannot start a run: ") and "annotations.csv" in out[0]
    assert str(tmp_path / "empty") in out[0]


async def test_the_cockpit_shows_the_check_while_the_loader_warms_up(tmp_path):
    from luna_core.data.preflight import check
    from luna_core.run.command_table import CommandChannel
    from luna_tui.app import CockpitApp
    from luna_tui.link.local import LocalLink
    from luna_tui.model.collector import EventCollector
    from tests.cockpit_helpers import FROZEN_READING, frozen_clock, on_screen

    data, _uids, _ = make_dataset_dir(tmp_path / "data", n_series=2, per_series=15)
    clear_cache()
    app = CockpitApp(LocalLink(EventCollector(), CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING,
                     preflight=lambda: check(data, tmp_path / "cache").text())
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        text = await on_screen(pilot, app, "check: a run can start", "check: samples   27")
        assert "check: store" in text and "2 to build" in text
