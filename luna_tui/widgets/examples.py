"""Examples (a view of its own): the candidates the latest validation got most wrong, as CT
images: the worst misses (nodules scored 0.5 or less, lowest first), the false alarms
(non-nodules scored above 0.5, highest first) or the best hits (nodules above 0.5), a cell
each with the central axial slice (lung window, the annotated diameter as a circle, a
candidate without one marked at its centre) and its numbers. `k` switches the kind, `,` / `.`
step to the validation before / after (is a miss still missed?), PageUp / PageDown page
through the cells, Enter opens the focused one in three planes. The file is read (stdlib, no
numpy) only when the epoch or kind changes."""

from __future__ import annotations

import os

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.widgets import Static

from luna_core.errors import LunaInputError
from luna_core.run.example_file import (
    KIND_NONE,
    KIND_TITLE,
    KINDS,
    Example,
    ExampleSet,
    examples_path,
    read_examples,
)
from luna_core.run.runs import rebase
from luna_tui.model.ct_image import any_image
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.widgets.pane import CockpitPane

_KEYS_HELP = ("k worst misses / false alarms / best hits, , and . the validation before / "
              "after, PgUp PgDn more cells, Enter the focused one in three planes")
#: A thumbnail is square in millimetres: IMAGE_ROWS rows of half-blocks, twice as many columns.
#: It grows with the pane (up to MAX) while a whole page still holds PAGE_CELLS cells.
IMAGE_ROWS, MAX_IMAGE_ROWS, CAPTION_ROWS, PAGE_CELLS = 11, 24, 2, 8


def cell_size(image_rows: int) -> tuple[int, int]:
    """(columns, rows) of a cell: its image (2 columns a row), a margin, its caption."""
    return 2 * image_rows + 2, image_rows + CAPTION_ROWS


def fit(width: int, height: int, image_rows: int) -> tuple[int, int]:
    """(cells a row, rows of cells) that fit a grid of ``width`` x ``height`` (gutters of 1)."""
    cols, rows = cell_size(image_rows)
    return max(1, (width + 1) // (cols + 1)), max(1, (height + 1) // (rows + 1))


def thumbnail_rows(width: int, height: int, count: int) -> int:
    """The largest image (in rows) that still fits ``min(count, PAGE_CELLS)`` cells on a page;
    IMAGE_ROWS when even that size does not."""
    want = max(1, min(count, PAGE_CELLS))
    for image_rows in range(MAX_IMAGE_ROWS, IMAGE_ROWS, -1):
        per_row, rows = fit(width, height, image_rows)
        if per_row * rows >= want:
            return image_rows
    return IMAGE_ROWS


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def caption(ex: Example) -> Text:
    if ex.pixels is not None:                  # --task seg: a slice's pixels (in 22 columns)
        _found, missed, false = ex.pixels
        text = Text(f"#{ex.rank} missed {missed}", style="bold")
        text.append(f" false {false}")
        text.append(f"\nslice {ex.center_irc[0]} · {ex.short_uid}", style="dim")
        return text
    text = Text(f"#{ex.rank} p {ex.probability:.3f}", style="bold")
    text.append(f" · loss {ex.loss:.2f}")
    diameter = f"⌀ {ex.diameter_mm:.1f} mm" if ex.diameter_mm > 0 else "no annotation"
    text.append(f"\n{diameter} · {ex.short_uid}", style="dim")
    return text


class ExampleCell(Container):
    """One candidate: its central axial slice and its numbers. Enter opens it."""

    can_focus = True
    BINDINGS = [Binding("enter", "open", "Open", show=False)]

    class Opened(Message):
        def __init__(self, example: Example) -> None:
            super().__init__()
            self.example = example

    def __init__(self, examples: ExampleSet, example: Example, image_class,
                 image_rows: int = IMAGE_ROWS, **kwargs) -> None:
        super().__init__(classes="example-cell", **kwargs)
        self.examples, self.example, self.image_class = examples, example, image_class
        self.image_rows = image_rows
        self.styles.width, self.styles.height = cell_size(image_rows)

    def compose(self) -> ComposeResult:
        if self.image_class is not None:
            image = self.image_class(any_image(self.examples, self.example),
                                     classes="example-image")
        else:
            image = Static(Text("(images off)", style="dim"), classes="example-image")
        image.styles.width, image.styles.height = 2 * self.image_rows, self.image_rows
        yield image
        yield Static(caption(self.example), classes="example-caption")

    def action_open(self) -> None:
        self.post_message(self.Opened(self.example))


class ExamplesPane(CockpitPane, Container):
    can_focus = True

    KEYS = [Binding("k", "kind", "Kind", show=False, tooltip=_KEYS_HELP),
            Binding("comma", "epoch(-1)", "Earlier", show=False, tooltip=_KEYS_HELP),
            Binding("full_stop", "epoch(1)", "Later", show=False, tooltip=_KEYS_HELP),
            Binding("pagedown", "page(1)", "More", show=False, tooltip=_KEYS_HELP),
            Binding("pageup", "page(-1)", "Back", show=False, tooltip=_KEYS_HELP)]

    def __init__(self, image_class=None, run_dir_here: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Examples · latest validation"
        self.image_class = image_class    # textual-image's widget for CT slices (None: off)
        self.run_dir_here = run_dir_here  # the run folder as this process sees it
        self.kind = KINDS[0]
        self.epoch: int | None = None        # None: follow the newest
        self.page = 0
        self.loaded: ExampleSet | None = None
        self._cache: dict[str, ExampleSet | str] = {}
        self._shown: tuple | None = None
        self._snap: RunSnapshot | None = None

    @classmethod
    def for_cockpit(cls, screen, name: str) -> ExamplesPane:
        return cls(screen.image_class, screen.run_dir_here, id=name)

    def compose(self) -> ComposeResult:
        yield Static("", id="examples-head")
        yield Container(id="examples-grid")

    # -- its keys --------------------------------------------------------------------------

    def opened(self, snap: RunSnapshot) -> None:
        """Its view came up: the pane, then (once drawn) its first cell."""
        self.focus()
        self.show(snap)
        self.call_after_refresh(self.focus_first_cell)

    def action_kind(self) -> None:
        """`k`: the examples view, then its next kind (misses, false alarms, best hits)."""
        if not self.bring_up():
            self.next_kind()

    def action_epoch(self, step: int) -> None:
        """`,` / `.`: the examples of the validation before / after (in their view)."""
        self.bring_up()
        self.step_epoch(step)

    def action_page(self, step: int) -> None:
        """PgDn / PgUp in the examples view: the next / previous cells (elsewhere nothing:
        a focused pane that scrolls has the keys first)."""
        if self.in_view():
            self.step_page(step)

    def on_example_cell_opened(self, message: ExampleCell.Opened) -> None:
        from luna_tui.screens.example_detail import ExampleDetail

        if self.loaded is not None:
            self.app.push_screen(ExampleDetail(self.loaded, message.example, self.image_class))

    # -- what to show ----------------------------------------------------------------------

    def _epochs(self) -> list[int]:
        return [e for e, _p in self._snap.examples] if self._snap else []

    def current_epoch(self) -> int | None:
        epochs = self._epochs()
        if not epochs:
            return None
        return self.epoch if self.epoch in epochs else epochs[-1]

    def next_kind(self) -> str:
        kinds = self.loaded.kinds if self.loaded is not None else KINDS
        at = kinds.index(self.kind) if self.kind in kinds else -1
        self.kind = kinds[(at + 1) % len(kinds)]
        self.page = 0
        self.refresh_cells()
        return self.kind

    def step_epoch(self, step: int) -> int | None:
        epochs = self._epochs()
        current = self.current_epoch()
        if current is None:
            return None
        k = max(0, min(len(epochs) - 1, epochs.index(current) + step))
        self.epoch = None if k == len(epochs) - 1 else epochs[k]
        self.page = 0
        self.refresh_cells()
        return epochs[k]

    def focus_first_cell(self) -> None:
        """The first cell gets the focus (Enter opens it) unless a cell has it already."""
        if isinstance(self.screen.focused, ExampleCell):
            return
        cells = self.query(ExampleCell)
        if cells:
            cells.first().focus()

    def step_page(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self.refresh_cells()

    def show(self, snap: RunSnapshot) -> None:
        self._snap = snap
        self.refresh_cells()

    def on_resize(self) -> None:
        if self._snap is not None:
            self.call_after_refresh(self.refresh_cells, True)

    def _path(self, epoch: int) -> str:
        """Where epoch ``epoch``'s examples are: the path the run recorded, moved under the
        run folder this cockpit reads when the run was copied or moved (else a copy would
        show the original's files); as written, else under that run folder (an attached run
        written from another working directory)."""
        recorded = dict(self._snap.examples)[epoch]
        here = self.run_dir_here
        path = rebase(recorded, self._snap.run_dir, here) or recorded
        if os.path.exists(path) or not here:
            return path
        return examples_path(here, epoch)

    def _load(self, epoch: int) -> ExampleSet | str:
        path = self._path(epoch)
        if path not in self._cache:
            try:
                self._cache = {path: read_examples(path)}
            except LunaInputError as exc:
                gone = not os.path.exists(path)
                self._cache = {path: ("no longer kept (--keep-examples)" if gone
                                      else one_line(str(exc)))}
            except Exception as exc:  # noqa: BLE001 - a bad file must not end the cockpit
                self._cache = {path: one_line(f"{path}: cannot show it ({exc})")}
        return self._cache[path]

    def grid_room(self) -> tuple[int, int]:
        """(columns, rows) for the cells: the pane less its two heading lines."""
        width, height = self.content_size
        return width or 80, (height or 20) - 2

    def capacity(self, count: int = PAGE_CELLS) -> tuple[int, int, int]:
        """(cells a row, rows of cells, image rows) for ``count`` examples in the pane."""
        width, height = self.grid_room()
        image_rows = thumbnail_rows(width, height, count)
        return (*fit(width, height, image_rows), image_rows)

    def refresh_cells(self, force: bool = False) -> None:
        if self._snap is None:
            return
        epoch = self.current_epoch()
        key = (epoch, self.kind, self.page, self.grid_room())
        if key == self._shown and not force:
            return
        self._shown = key
        head = self.query_one("#examples-head", Static)
        grid = self.query_one("#examples-grid", Container)
        focused = self.screen.focused if self.is_attached else None
        refocus = isinstance(focused, ExampleCell) or focused is self
        grid.remove_children()
        if epoch is None:
            self.loaded = None
            head.update(Text("no examples yet: they are kept after each validation "
                             "(--examples K)", style="dim"))
            return
        found = self._load(epoch)
        if isinstance(found, str):
            self.loaded = None
            head.update(Text(f"E{epoch}: {found}", style="yellow"))
            return
        self.loaded = found
        if self.kind not in found.kinds:           # another task's file: its first kind
            self.kind = found.kinds[0]
        chosen = found.of_kind(self.kind)
        per_row, rows, image_rows = self.capacity(len(chosen))
        fits = per_row * rows
        pages = max(1, -(-len(chosen) // fits))
        self.page = min(self.page, pages - 1)
        shown = chosen[self.page * fits:(self.page + 1) * fits]
        epochs = self._epochs()
        title = Text(f"val E{epoch} ", style="bold")
        title.append(f"{KIND_TITLE[self.kind]}: {len(chosen)}")
        if len(shown) < len(chosen):
            title.append(f" · {self.page * fits + 1}–{self.page * fits + len(shown)} shown, "
                         "PgDn more")
        title.append(f" · k kind · , . epoch ({epochs.index(epoch) + 1}/{len(epochs)}) · "
                     "Enter open", style="dim")
        head.update(title)
        if not chosen:                   # say what an empty kind means, where cells would be
            grid.styles.grid_size_columns = 1
            grid.mount(Static(Text(KIND_NONE[self.kind], style="yellow" if self.kind == "best"
                                   else "green"), classes="examples-none"))
            return
        grid.styles.grid_size_columns = per_row
        grid.styles.grid_rows = str(cell_size(image_rows)[1])
        cells = [ExampleCell(found, ex, self.image_class, image_rows) for ex in shown]
        grid.mount_all(cells)
        if cells and refocus:             # the cell that had the focus has gone: the first
            self.call_after_refresh(cells[0].focus)
