"""OCTA mode (SAM-OCTA2): layer-sequence vessel / FAZ segmentation with prompts propagated by SAM2 memory.

Modules: :mod:`.datasets` (OCTA-500 readers), :mod:`.objects` (vessel clusters, FAZ),
:mod:`.prompts` (automatic point prompts), :mod:`.metrics`, :mod:`.pipeline`
(progress generators), :mod:`.command` (``sam2med octa``), :mod:`.synthetic` (test data).
Importing this package imports neither torch nor Qt.
"""

from .datasets import (
    LayerSequence,
    ProjectionSet,
    read_faz3d,
    read_ground_truth,
    read_layer_sequence,
    read_projections,
)
from .metrics import sequence_metrics
from .objects import faz_object, split_vessels
from .pipeline import OctaConfig, OctaProgress, run_layer_sequence, run_manual, run_projection, run_sparse
from .prompts import ObjectPrompts, PromptConfig, prompts_from_labels

__all__ = [
    "LayerSequence", "ProjectionSet", "read_faz3d", "read_ground_truth", "read_layer_sequence",
    "read_projections", "sequence_metrics", "faz_object", "split_vessels", "OctaConfig", "OctaProgress",
    "run_layer_sequence", "run_manual", "run_projection", "run_sparse", "ObjectPrompts", "PromptConfig",
    "prompts_from_labels",
]
