"""Speech emotion recognition pipeline: DVC stages from corpora to evaluated models."""
