"""Where the repository's own folders are: its root, ``data/`` and ``image/``.

>>> (REPO_ROOT / "ch02_text").is_dir(), DATA_DIR.name, IMAGE_DIR.name
(True, 'data', 'image')
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
IMAGE_DIR = REPO_ROOT / "image"
