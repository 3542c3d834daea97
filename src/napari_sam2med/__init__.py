"""napari-sam2med: SAM2-family models for medical stacks in napari.

The package is headless below ``_qt``: importing it never imports Qt or napari.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
