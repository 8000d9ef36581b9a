"""Verification: a real-vs-synthetic detector (spectral and CNN), its robustness evaluation, invisible watermarks
and the ``verify`` report that puts metadata, watermark and detector side by side."""
