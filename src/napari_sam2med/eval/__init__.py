"""Evaluation of promptable segmentation on labelled volumes: protocols, runner, reports, baselines."""
