"""Fine-tuning a nodule classifier for another question (the book's ch. 14: malignancy).

The model's blocks with parameters, in order, are ``tail_batchnorm, block1 … block4,
head_linear``. ``finetune(model, checkpoint, depth)`` loads every block but the head from a
classifier checkpoint (the head starts new, from the model's own init), and leaves only the
last ``depth`` blocks trainable: depth 1 trains the head alone, depth 2 the last block too, as
the book's ``--finetune-depth``. A checkpoint is a run folder (its ``best.pt``) or a ``.pt``.
"""

from __future__ import annotations

import os

import torch

from luna_core.errors import LunaInputError


def blocks(model: torch.nn.Module) -> list[str]:
    """The names of the model's children that hold parameters, in order."""
    return [name for name, child in model.named_children() if any(True for _ in
                                                                   child.parameters())]


def checkpoint_path(source: str, option: str = "--finetune") -> str:
    """A ``.pt`` as given; a run folder: its ``checkpoints/best.pt`` (``option``: what the
    error says the path was given as)."""
    if os.path.isdir(source):
        best = os.path.join(source, "checkpoints", "best.pt")
        if not os.path.isfile(best):
            raise LunaInputError(f"no checkpoints/best.pt in this run folder ({option} "
                                 "takes a run folder or a checkpoint)", source)
        return best
    if not os.path.isfile(source):
        raise LunaInputError(f"no such checkpoint or run folder ({option})", source)
    return source


def finetune(model: torch.nn.Module, source: str, depth: int) -> dict:
    """Load ``source``'s weights into ``model`` but its head, and freeze all but the last
    ``depth`` blocks; returns {"checkpoint": path, "trained": [block names], "frozen": [...]}.
    A LunaInputError names the file when it is not a checkpoint of this model."""
    from luna_core.train.checkpoint import CheckpointError, load_checkpoint

    names = blocks(model)
    if not 1 <= depth <= len(names):
        raise LunaInputError(f"--finetune-depth must be from 1 to {len(names)} (the model's "
                             f"blocks: {', '.join(names)}), not {depth}")
    path = checkpoint_path(source)
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:        # one line: torch's reasons run to paragraphs
        why = str(exc).removeprefix(f"{path}: ").splitlines()[0]
        raise LunaInputError(why if len(why) <= 120 else why.split(" (")[0], path) from None
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise LunaInputError("not a luna-tui checkpoint (no model weights)", path)
    head = names[-1]
    kept = {k: v for k, v in weights.items() if k.split(".")[0] != head}
    own = {k for k in model.state_dict() if k.split(".")[0] != head}
    if set(kept) != own:
        missing = sorted(own - set(kept))
        raise LunaInputError("not a checkpoint of this model (" + (
            f"it lacks {missing[0]}" if missing else
            f"it has {sorted(set(kept) - own)[0]}") + ")", path)
    try:
        model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        raise LunaInputError(f"not a checkpoint of this model ({str(exc).splitlines()[0]})",
                             path) from None
    trained = names[-depth:]
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] in trained)
    return {"checkpoint": path, "trained": trained,
            "frozen": [n for n in names if n not in trained]}
