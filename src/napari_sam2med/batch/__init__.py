"""Many volumes on dask.distributed (``sam2med batch`` and the napari Batch dock).

``manifest`` reads and validates the list of volumes, ``task`` is what a worker runs (one model
per worker, one task per volume, through ``engine.volume.segment_to_file`` like ``propagate``),
``runner`` schedules them (local cluster or a running scheduler), ``command`` is the CLI.
Submodules are imported on use, so ``sam2med --help`` does not import dask or torch.
"""
