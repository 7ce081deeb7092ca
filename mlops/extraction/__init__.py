"""Turning document bytes into structured loan data: pages as words with geometry (text layer or
OCR), field candidates ranked by a trained model, and a trained document-type classifier.

The package imports none of its modules: :mod:`mlops.extraction.extractors` pulls in
scikit-learn and the OCR engine (~2 s), which a stage that only scores labels must not pay."""
