"""Scoring a validation as the LUNA16 challenge does (FROC, CPM with a bootstrap interval)
and the ranking metrics beside it (ROC AUC, average precision): numpy and scikit-learn, no
torch, no UI."""

from luna_core.score.froc import FP_LEVELS, Findings, FrocResult, FrocScorer
from luna_core.score.validation import ValidationScore, ValidationScorer, read_findings

__all__ = ["FP_LEVELS", "Findings", "FrocResult", "FrocScorer", "ValidationScore",
           "ValidationScorer", "read_findings"]
