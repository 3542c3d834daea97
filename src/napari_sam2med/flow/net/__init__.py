"""The SAM2Flow network: encoders, correlation, refinement, dual memory and ROI decoder (pure torch)."""

from .memory import DualMemoryReader, FlowMemoryBank
from .model import FrameFeatures, PairOutput, SAM2Flow, SAM2FlowConfig, pad_to_stride

__all__ = ["SAM2Flow", "SAM2FlowConfig", "FrameFeatures", "PairOutput", "pad_to_stride", "FlowMemoryBank",
           "DualMemoryReader"]
