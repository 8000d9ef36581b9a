"""Verification: real-vs-synthetic detectors (the calibrated ``probe``, and the earlier spectral and CNN ones), their
generalisation and robustness evaluation, localisation of synthetic regions, and the ``verify`` report that puts
metadata, Content Credentials, the watermark and the detector side by side."""
