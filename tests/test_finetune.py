"""Fine-tuning (the book's ch. 14): the weights of every block but the head come from the
classifier's checkpoint, the head starts new, and --finetune-depth leaves exactly the last N
blocks trainable (parameter counts)."""

from __future__ import annotations

import os

import pytest
import torch

from luna_core.errors import LunaInputError
from luna_core.train.finetune import blocks, finetune
from luna_core.train.model import LunaModel

# LunaModel's parameters per block (tail_batchnorm, block1..4, head_linear)
SIZES = {"tail_batchnorm": 2, "block1": 1_960, "block2": 10_400, "block3": 41_536,
         "block4": 166_016, "head_linear": 2_306}


def _checkpoint(tmp_path, model) -> str:
    from luna_core.train.checkpoint import CHECKPOINT_FORMAT_VERSION

    path = str(tmp_path / "run" / "checkpoints" / "best.pt")
    os.makedirs(os.path.dirname(path))
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, "model": model.state_dict()},
               path)
    return path


def test_the_blocks_and_their_sizes():
    model = LunaModel()
    assert blocks(model) == list(SIZES)
    for name, size in SIZES.items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == size
    assert sum(SIZES.values()) == 222_220          # the book's model


@pytest.mark.parametrize("depth, trained", [(1, 2_306), (2, 168_322), (6, 222_220)])
def test_depth_leaves_exactly_the_last_blocks_trainable(tmp_path, depth, trained):
    torch.manual_seed(1)
    source = LunaModel()
    path = _checkpoint(tmp_path, source)
    torch.manual_seed(2)
    model = LunaModel()
    head_before = model.head_linear.weight.detach().clone()
    said = finetune(model, str(tmp_path / "run"), depth)       # a run folder: its best.pt
    assert said["checkpoint"] == path and said["trained"] == list(SIZES)[-depth:]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trained
    for name, value in model.state_dict().items():
        if name.startswith("head_linear."):
            continue
        assert torch.equal(value, source.state_dict()[name]), name        # loaded
    assert torch.equal(model.head_linear.weight, head_before)             # new, not loaded


def test_a_bad_depth_or_source_is_named(tmp_path):
    model = LunaModel()
    with pytest.raises(LunaInputError, match="from 1 to 6"):
        finetune(model, str(tmp_path), 0)
    with pytest.raises(LunaInputError, match="no checkpoints/best.pt"):
        finetune(model, str(tmp_path), 1)
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(LunaInputError) as err:
        finetune(model, str(bad), 1)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
