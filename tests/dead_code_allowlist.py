"""Names the dead-code check (tests/test_design.py, vulture) must take as used: the code below is
never run, only read; each name is used where a static reader cannot see it. Add a name here
only with the reason it is called from outside the Python source (a hook, a protocol, a file
format, an entry point) — never to keep code that nothing calls."""

# torch.nn.Module.__call__ runs forward()
_.forward

# logging's module flag, read by logging itself
logging.raiseExceptions

# dataclass fields written to JSON with asdict() and read back by key (plans.json, dataset.json)
_.schema_version
_.nnunet_format

# pydicom data-element attributes: written into DICOM files by the test-data helpers
_.SOPClassUID, _.SOPInstanceUID, _.StudyInstanceUID, _.SeriesInstanceUID, _.FrameOfReferenceUID
_.Modality, _.PatientID, _.InstanceNumber, _.ImagePositionPatient, _.ImageOrientationPatient
_.PixelSpacing, _.SliceThickness, _.SpacingBetweenSlices, _.RescaleSlope, _.RescaleIntercept
_.SamplesPerPixel, _.PhotometricInterpretation, _.BitsAllocated, _.BitsStored, _.HighBit
_.PixelRepresentation, _.PixelData

# signal.signal() calls its handler with (signum, frame)
signum, frame

# SimpleITK's LoggerBase calls these from C++ with ITK's messages (io._ITKWarnings relays warnings)
_.DisplayText, _.DisplayErrorText, _.DisplayWarningText, _.DisplayGenericOutputText, _.DisplayDebugText
