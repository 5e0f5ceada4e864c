"""Data: datalists for CHASE_DB1 and COVID-19 CT, preprocessing, inference I/O and synthetic phantoms."""

from .datalists import (
    IMAGE_EXTENSIONS,
    chase_datalist,
    covid_datalist,
    repeat_to_length,
    slice_nifti_volumes,
    split_datalist,
)
from .intensity import intensity_percentile, match_intensity_range
from .io import dicom_series_uid, list_inference_inputs, load_dicom_series, load_inference_input, save_label
from .synthetic import (
    make_ct_phantom,
    make_ct_phantom_volume,
    make_retina_phantom,
    write_chase_phantoms,
    write_covid_phantoms,
)
from .transforms import (
    MODES,
    BinarizeMaskd,
    DefaultMaskd,
    ReadImaged,
    ToGrayscaled,
    ValidateLabeld,
    chase_transforms,
    covid_transforms,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MODES",
    "chase_datalist",
    "covid_datalist",
    "slice_nifti_volumes",
    "split_datalist",
    "repeat_to_length",
    "intensity_percentile",
    "match_intensity_range",
    "dicom_series_uid",
    "list_inference_inputs",
    "load_dicom_series",
    "load_inference_input",
    "save_label",
    "make_ct_phantom",
    "make_ct_phantom_volume",
    "make_retina_phantom",
    "write_chase_phantoms",
    "write_covid_phantoms",
    "BinarizeMaskd",
    "DefaultMaskd",
    "ReadImaged",
    "ToGrayscaled",
    "ValidateLabeld",
    "chase_transforms",
    "covid_transforms",
]
