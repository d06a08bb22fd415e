"""A CT slice of an example as a picture: the lung window (-1000 ... 400 HU), square pixels in
millimetres (the slice spacing is often 3x the in-plane one), and the annotated nodule's
diameter drawn as a circle (a candidate without one, a false alarm, marked by four ticks
round its centre). Pillow only (no numpy), so the cockpit can draw it."""

from __future__ import annotations

from PIL import Image, ImageDraw

from luna_core.run.example_file import Example, ExampleSet, lung_window

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
