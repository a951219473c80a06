"""MARS Explorer core: margin-aware augmentation for Bradley-Terry reward models."""

__version__ = "0.1.0"
