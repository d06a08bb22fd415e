"""A CT slice of an example as a picture: the lung window (-1000 ... 400 HU), square pixels in
millimetres (the slice spacing is often 3x the in-plane one), and the annotated nodule's
diameter drawn as a circle (a candidate without one, a false alarm, marked by four ticks
round its centre). A segmentation example (--task seg) is its slice with the model's call
over the label: found pixels green, missed magenta, falsely marked amber, as a close-up round
the pixels that made it an example or the whole slice. Pillow only (no numpy), so the cockpit
can draw it."""

from __future__ import annotations

from PIL import Image, ImageDraw

from luna_core.run.example_file import (
    FALSE_RGB,
    FOUND_RGB,
    MISSED_RGB,
    Example,
    ExampleSet,
    lung_window,
)

VIEWS = ("axial", "coronal", "sagittal")
CIRCLE = (255, 176, 0)          # amber: visible on grey, colour-blind safe
#: A candidate without a diameter: ticks from 3 to 8 mm off its centre, along rows and columns.
MARK_MM = (3.0, 8.0)


def plane(examples: ExampleSet, ex: Example, view: str, offset: int = 0):
    """(rows of HU, (row mm, col mm), centre (row, col) in the slice) of ``view`` through the
    candidate's centre, ``offset`` slices (voxels along the view's axis) away."""
    i, r, c = ex.irc_in_chunk
    x_mm, y_mm, z_mm = ex.vx_size_xyz
    if view == "axial":
        return examples.axial(ex, i + offset), (y_mm, x_mm), (r, c)
    d = examples.width_irc[0]       # coronal and sagittal: the last slice on top (head up
    if view == "coronal":           # for the usual slice order)
        return examples.coronal(ex, r + offset)[::-1], (z_mm, x_mm), (d - 1 - i, c)
    return examples.sagittal(ex, c + offset)[::-1], (z_mm, y_mm), (d - 1 - i, r)


def slice_image(rows: list[list[int]], pixel_mm: tuple[float, float],
                centre: tuple[int, int] | None = None, diameter_mm: float = 0.0,
                mm_per_px: float | None = None) -> Image.Image:
    """RGB picture of ``rows`` (HU) with square pixels of ``mm_per_px`` (default: the finer of
    the two spacings, halved), a circle of ``diameter_mm`` round ``centre`` when given."""
    h, w = len(rows), len(rows[0]) if rows else 0
    grey = Image.frombytes("L", (w, h), bytes(lung_window(v) for row in rows for v in row))
    row_mm, col_mm = pixel_mm
    step = mm_per_px or min(row_mm, col_mm) / 2
    size = (max(1, round(w * col_mm / step)), max(1, round(h * row_mm / step)))
    img = grey.resize(size, Image.Resampling.BILINEAR).convert("RGB")
    if centre is None:
        return img
    cy = (centre[0] + 0.5) * row_mm / step
    cx = (centre[1] + 0.5) * col_mm / step
    line = max(1, round(size[0] / 96))
    draw = ImageDraw.Draw(img)
    if diameter_mm > 0:
        radius = diameter_mm / 2 / step
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=CIRCLE,
                     width=line)
    else:       # no annotation (a false alarm): four ticks round the centre, which stays clear
        near, far = MARK_MM[0] / step, MARK_MM[1] / step
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            draw.line((cx + dx * near, cy + dy * near, cx + dx * far, cy + dy * far),
                      fill=CIRCLE, width=line)
    return img


def example_image(examples: ExampleSet, ex: Example, view: str = "axial", offset: int = 0,
                  mm_per_px: float | None = None) -> Image.Image:
    rows, pixel_mm, centre = plane(examples, ex, view, offset)
    return slice_image(rows, pixel_mm, centre if offset == 0 else None, ex.diameter_mm,
                       mm_per_px)


#: --task seg: the pixels' colours over the grey slice (luna_core.run.example_file's).
FOUND, MISSED, FALSE = FOUND_RGB, MISSED_RGB, FALSE_RGB
SEG_VIEWS = ("close-up", "slice")
CLOSE_UP = 64            # pixels each way of a close-up (the size of a training crop)


def _mask_image(rows: list[list[int]], keep) -> Image.Image:
    h, w = len(rows), len(rows[0]) if rows else 0
    return Image.frombytes("L", (w, h), bytes(255 if keep(v) else 0 for row in rows
                                              for v in row))


def seg_image(examples: ExampleSet, ex: Example, view: str = "close-up",
              mm_per_px: float | None = None) -> Image.Image:
    """A seg example's slice in the lung window with the call over the label; ``view``
    'close-up': CLOSE_UP pixels round the example's centre, 'slice': the whole slice."""
    hu, label, called = (examples.plane(ex, k) for k in range(3))
    h, w = len(hu), len(hu[0]) if hu else 0
    box = (0, 0, w, h)
    if view == "close-up":
        _i, r, c = ex.irc_in_chunk
        size_r, size_c = min(CLOSE_UP, h), min(CLOSE_UP, w)
        top = max(0, min(h - size_r, r - size_r // 2))
        left = max(0, min(w - size_c, c - size_c // 2))
        box = (left, top, left + size_c, top + size_r)
    grey = Image.frombytes("L", (w, h), bytes(lung_window(v) for row in hu for v in row))
    img = grey.convert("RGB")
    both = [[2 * a + b for a, b in zip(lr, cr, strict=True)] for lr, cr in zip(label, called,
                                                                             strict=True)]
    for code, colour in ((3, FOUND), (2, MISSED), (1, FALSE)):   # label*2 + call
        img = Image.composite(Image.new("RGB", (w, h), colour), img,
                              _mask_image(both, lambda v, code=code: v == code))
    img = img.crop(box)
    x_mm, y_mm, _z = ex.vx_size_xyz
    step = mm_per_px or min(x_mm, y_mm) / 2
    size = (max(1, round(img.width * x_mm / step)), max(1, round(img.height * y_mm / step)))
    return img.resize(size, Image.Resampling.NEAREST)


def views_of(examples: ExampleSet) -> tuple[str, ...]:
    return SEG_VIEWS if examples.task == "seg" else VIEWS


def any_image(examples: ExampleSet, ex: Example, view: str | None = None, offset: int = 0,
              mm_per_px: float | None = None) -> Image.Image:
    """The picture of an example of either task (``view``: one of ``views_of``; None: the
    first)."""
    view = view or views_of(examples)[0]
    if examples.task == "seg":
        return seg_image(examples, ex, view, mm_per_px)
    return example_image(examples, ex, view, offset, mm_per_px)
