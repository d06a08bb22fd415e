"""TensorBoard for --task seg: the pixel scalars under the book's tags, and the first slices of
each kind of examples as images with found, missed and falsely marked pixels coloured."""

from __future__ import annotations

import glob
import io

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from luna_core.run import events as ev
from luna_core.run.example_file import FALSE_RGB, FOUND_RGB, MISSED_RGB
from luna_core.train.tensorboard import TB_SEG_IMAGES, TensorBoardSink
from tests.cockpit_helpers import write_fake_seg_examples


def test_seg_scalars_and_example_images(tmp_path):
    sink = TensorBoardSink(str(tmp_path), "luna", "T", "seg")
    sink(ev.EpochMetrics(phase="val", epoch=1, total_samples=320,
                         metrics={"pr/recall": 0.8, "seg/dice": 0.4, "percent_all/fp": 1234.5},
                         neg_correct=0, neg_count=0, pos_correct=8, pos_count=10))
    path = write_fake_seg_examples(str(tmp_path / "E001.zip"), 1, k=TB_SEG_IMAGES + 1)
    sink(ev.ExamplesSaved(epoch=1, path=path, counts={"missed_pixels": 4, "false_pixels": 4}))
    sink.close()
    (log_dir,) = glob.glob(str(tmp_path / "luna" / "T-val_cls-seg"))
    acc = EventAccumulator(log_dir, size_guidance={"images": 0})
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("seg/dice")] == [(320, 0.4000000059604645)]
    tags = acc.Tags()["images"]
    assert sorted(tags) == sorted(f"{k}/{r}" for k in ("missed_pixels", "false_pixels")
                                  for r in range(1, TB_SEG_IMAGES + 1))
    image = acc.Images("missed_pixels/1")[0]
    assert image.step == 320
    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    assert pixels.shape == (96, 96, 3)
    assert tuple(pixels[48, 44]) == FOUND_RGB and tuple(pixels[48, 52]) == MISSED_RGB
    assert tuple(pixels[30, 64]) == FALSE_RGB
    assert len(set(pixels[5, 5])) == 1                     # lung: grey


def test_a_classifier_runs_examples_add_no_images(tmp_path):
    from tests.cockpit_helpers import write_fake_examples

    sink = TensorBoardSink(str(tmp_path), "luna", "T", "c")
    path = write_fake_examples(str(tmp_path / "E001.zip"), 1, k=1)
    sink(ev.ExamplesSaved(epoch=1, path=path, misses=1, false_alarms=1, best=1))
    sink.close()
    assert not glob.glob(str(tmp_path / "luna" / "*"))      # no writer was even opened
