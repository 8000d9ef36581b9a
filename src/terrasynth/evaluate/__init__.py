"""Realism evaluation: feature extractors, distribution and paired metrics, layout fidelity, memorisation,
baselines and the HTML report behind ``terrasynth evaluate`` and ``benchmarks/realism.py``.

Metrics are pure functions of feature arrays (:mod:`.metrics`); extraction is a separate, pluggable step
(:mod:`.features`) and every score carries its extractor, input resize and N.
"""
