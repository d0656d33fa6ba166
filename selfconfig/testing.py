"""Helpers for tests (selfconfig's and its users'): small synthetic files in real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom_slice(path: Path, pixels: np.ndarray, position, orientation, series_uid: str, *, instance: int,
                      pixel_spacing=(0.8, 0.6), slope: float = 1.0, intercept: float = 0.0,
                      slice_thickness: float | None = None, spacing_between_slices: float | None = None,
                      patient_id: str = "test") -> None:
    """One CT slice (int16 pixels) with the given ImagePositionPatient / ImageOrientationPatient.
    ``slice_thickness`` and ``spacing_between_slices`` may be set to lie on purpose."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(s) for s in pixel_spacing]
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    if spacing_between_slices is not None:
        ds.SpacingBetweenSlices = spacing_between_slices
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.asarray(pixels).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
