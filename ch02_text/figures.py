"""Saving matplotlib figures: atomically, into ``image/`` for the book's runs or beside a run's output.
"""

from __future__ import annotations

import os
from pathlib import Path

from .paths import IMAGE_DIR
from .safe_files import atomic_write_bytes


def save_figure(fig, name: str, out_dir: str | os.PathLike | None = None) -> Path:
    """Save a matplotlib figure as PNG atomically in ``image/`` (or ``out_dir``).

    In a notebook (inline backend) the figure stays open so it shows below the cell;
    anywhere else it is closed.
    """
    import io

    import matplotlib
    import matplotlib.pyplot as plt

    out = Path(out_dir) if out_dir is not None else IMAGE_DIR
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    path = atomic_write_bytes(out / name, buf.getvalue())
    if "inline" not in matplotlib.get_backend():
        plt.close(fig)
    return path
