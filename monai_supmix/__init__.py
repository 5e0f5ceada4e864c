"""monai_supmix: semi-supervised segmentation with Supervised ClassMix and SUFD for MONAI."""

import logging as _logging
import warnings as _warnings

__version__ = "0.7.0"

__all__ = ["__version__"]

# MONAI announces at import, on every machine without NVIDIA's nvImageCodec, that it falls back
# to pydicom's own decoders, which is what this package uses anyway: keep the console for
# messages that need the user's attention
_logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", message=r"NvImgCodecPydicomReader.*", category=UserWarning)
