"""monai_supmix: semi-supervised segmentation with Supervised ClassMix and SUFD for MONAI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
