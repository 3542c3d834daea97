"""Flow estimators (the ``FlowEstimator`` protocol): classical TV-L1 / ILK and SAM2Flow.

Import the submodule you need: ``estimators.classical`` needs only scikit-image,
``estimators.sam2flow`` imports torch.
"""
