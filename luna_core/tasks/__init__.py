"""The book's models as tasks (luna_core.train.task): each module here declares one.
``nodule``: the candidate classifier of ch. 11–12; ``seg``: the segmentation U-Net of ch. 13
(its examples in ``seg_examples``)."""
