"""Throughput measurement (``radzoo bench``): per model, precision, device, batch and input path.

``radzoo.bench.throughput.run_bench`` measures; ``write_result`` writes JSON + Markdown;
``record_on_cards`` puts the latest run into each writable artifact's model card. The choices
below live here so the command line can offer them without importing numpy or torch.
"""

PATHS = ("model", "png", "dicom")
DEFAULT_BATCHES = (1, 8, 32)
DEFAULT_MODELS = ("mococxr_resnet50", "mococxr_densenet121", "igcl_vitb32")
DICOM_CODECS = ("raw", "j2k")
