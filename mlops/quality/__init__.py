"""Data-quality checks: expectation suites, anomaly detectors and the bias check."""
