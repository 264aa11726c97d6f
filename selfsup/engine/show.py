"""``--show-batch``: one picture of what the network is asked to solve, row by row."""
from __future__ import annotations

from pathlib import Path

from ..utils.errors import SelfSupError
from ..methods import Panel


def render_panels(panels: list[Panel], path: Path, title: str = "", max_columns: int = 18) -> Path:
    """Draw each panel as a row of images (captions under them) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    if not panels:
        raise SelfSupError("nothing to draw: the method returned no panels")
    columns = min(max_columns, max(len(p.images) for p in panels))
    height = 1.45 * len(panels) + 0.8
    fig, axes = plt.subplots(len(panels), columns, figsize=(1.1 * columns, height), squeeze=False)
    for row, panel in enumerate(panels):
        images = panel.images.detach().float().cpu().clamp(0, 1)
        for col in range(columns):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(images):
                continue
            image = images[col]
            if image.shape[0] == 1:
                ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            if panel.captions and col < len(panel.captions) and panel.captions[col]:
                ax.set_title(panel.captions[col], fontsize=7, pad=2)
        above = 1.3 if panel.captions else 1.06  # over the captions, if any
        axes[row, 0].text(0, above, panel.title, transform=axes[row, 0].transAxes, fontsize=8, ha="left", va="bottom")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.75 / height, wspace=0.08, hspace=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise SelfSupError(f"cannot write --show-batch picture {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path


__all__ = ["render_panels"]
