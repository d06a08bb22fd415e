"""One example in three planes (Enter on an example cell): the axial, coronal and sagittal
slices through its centre in the lung window, each as large as its third of the screen allows
in proportion (square millimetres: textual-image's auto size keeps the picture's shape), the
annotated diameter as a circle, and its numbers; ↑ ↓ step the axial slice through the
chunk's 32 (the circle marks the centre slice only), Esc goes back. A --task seg example: a
close-up round its pixels and the whole slice, pixels found, missed and falsely marked in
three colours."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from luna_core.run.example_file import KIND_TITLE, MAL_KINDS, Example, ExampleSet
from luna_tui.model.ct_image import CLOSE_UP, FALSE, FOUND, MISSED, any_image, views_of


def seg_numbers(ex: Example, epoch: int) -> Text:
    found, missed, false = ex.pixels
    text = Text(f"val E{epoch} · {KIND_TITLE[ex.kind]} #{ex.rank}\n", style="bold")
    text.append(f"nodule pixels found {found}, missed {missed}; falsely marked {false}"
                + (f" · recall {ex.probability:.3f}" if ex.is_nodule else " · no nodule here")
                + f" · loss {ex.loss:.3f}")
    text.append("\nfound ", style="dim")
    text.append("■", style="rgb({},{},{})".format(*FOUND))
    text.append(" missed ", style="dim")
    text.append("■", style="rgb({},{},{})".format(*MISSED))
    text.append(" falsely marked ", style="dim")
    text.append("■", style="rgb({},{},{})".format(*FALSE))
    text.append(f"\nseries {ex.series_uid} · slice {ex.center_irc[0]}", style="dim")
    return text


def numbers(ex: Example, epoch: int) -> Text:
    if ex.pixels is not None:
        return seg_numbers(ex, epoch)
    text = Text(f"val E{epoch} · {KIND_TITLE[ex.kind]} #{ex.rank}\n", style="bold")
    label = (("malignant", "benign") if ex.kind in MAL_KINDS else ("nodule", "not a nodule"))
    text.append(f"probability {ex.probability:.4f} · loss {ex.loss:.3f} · "
                f"{label[0] if ex.is_nodule else label[1]}")
    text.append(f" · diameter {ex.diameter_mm:.1f} mm" if ex.diameter_mm > 0
                else " · no annotation")
    text.append(f"\nseries {ex.series_uid}\ncentre xyz ("
                + ", ".join(f"{v:.1f}" for v in ex.center_xyz) + ") mm · irc ("
                + ", ".join(str(v) for v in ex.center_irc) + ")", style="dim")
    return text


class ExampleDetail(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Back"), Binding("q", "dismiss", "Back"),
                Binding("up", "slice(1)", "Slice +1"), Binding("down", "slice(-1)",
                                                               "Slice -1")]

    def __init__(self, examples: ExampleSet, example: Example, image_class) -> None:
        super().__init__()
        self.examples, self.example, self.image_class = examples, example, image_class
        self.slice_offset = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="example-detail"):
            yield Static(numbers(self.example, self.examples.epoch), id="detail-numbers")
            with Horizontal(id="detail-planes"):
                for view in views_of(self.examples):
                    with Vertical(classes="detail-plane"):
                        yield Static(self._label(view), id=f"label-{view}",
                                     classes="detail-label")
                        if self.image_class is not None:
                            yield self.image_class(self._image(view), id=f"plane-{view}",
                                                   classes="detail-image")
                        else:
                            yield Static("(images off)", classes="detail-image")
            yield Static(Text("Esc back" if self.examples.task == "seg"
                              else "↑ ↓ axial slice · Esc back", style="dim"), id="detail-keys")

    def _image(self, view: str):
        return any_image(self.examples, self.example, view,
                         self.slice_offset if view == "axial" else 0)

    def _label(self, view: str) -> str:
        if self.examples.task == "seg":
            return (f"close-up · {CLOSE_UP} px round it" if view == "close-up"
                    else f"whole slice {self.example.center_irc[0]}")
        if view != "axial":
            return f"{view} · centre"
        d = self.examples.width_irc[0]
        index = self.example.irc_in_chunk[0] + self.slice_offset
        return f"axial · slice {index + 1}/{d}" + (" (centre)" if self.slice_offset == 0 else "")

    def action_slice(self, step: int) -> None:
        if self.examples.task == "seg":               # one slice kept: nothing to step
            return
        d = self.examples.width_irc[0]
        centre = self.example.irc_in_chunk[0]
        self.slice_offset = max(-centre, min(d - 1 - centre, self.slice_offset + step))
        self.query_one("#label-axial", Static).update(self._label("axial"))
        if self.image_class is not None:
            self.query_one("#plane-axial").image = self._image("axial")
