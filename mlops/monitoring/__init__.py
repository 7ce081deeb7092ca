"""Monitoring across runs: per-run field statistics (kept in the metadata store) and the drift of a
run against a baseline window of earlier good runs. Reads only the metadata store."""
