"""Generation: pipelines from layout and text to images, and provenance-tagged output files."""
