"""The book's models as tasks (luna_core.train.task): each module here declares one.
``nodule``: the candidate classifier of ch. 11–12."""
