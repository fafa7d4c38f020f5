"""The SR3 paper's own numbers (protocols.md), shown beside a run's table only where the task matches.

Source: Saharia et al., "Image Super-Resolution via Iterative Refinement" (arXiv 2104.07636). The values were
transcribed into the project's protocol notes from a reconstruction of the paper's tables; the report says
so, and they are never mixed into the run's own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: its test data, its rows (method -> {column: value}) and where it comes from."""

    task: str
    title: str
    data: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
    source: str
    human: str  # the paper's 2AFC headline for this task

    def value(self, method: str, column: str) -> float | None:
        """The paper's value for (method, column), or None when the paper gives none."""
        for name, values in self.rows:
            if name == method:
                return dict(values).get(column)
        return None


PAPER_TABLES: dict[str, PaperTable] = {
    "faces-16-128": PaperTable(
        task="faces-16-128",
        title="SR3 paper, faces 16\u2192128 (8x), Table 1",
        data="CelebA-HQ test images (models trained on FFHQ)",
        columns=("psnr", "ssim", "consistency"),
        rows=(
            ("PULSE", (("psnr", 16.88), ("ssim", 0.44), ("consistency", 161.1))),
            ("FSRGAN", (("psnr", 23.01), ("ssim", 0.62), ("consistency", 33.8))),
            ("Regression", (("psnr", 23.96), ("ssim", 0.69), ("consistency", 2.71))),
            ("SR3", (("psnr", 23.04), ("ssim", 0.65), ("consistency", 2.68))),
        ),
        source="Saharia et al. 2021 (arXiv 2104.07636), Table 1",
        human="SR3 fooled raters close to 50% of the time in both 2AFC tasks; FSRGAN and PULSE at most 34%.",
    ),
    "imagenet-64-256": PaperTable(
        task="imagenet-64-256",
        title="SR3 paper, ImageNet 64\u2192256 (4x)",
        data="ImageNet validation images (FID/IS on 50k samples; ResNet-50 errors on the first 1k)",
        columns=("fid", "is", "psnr", "ssim", "top1_error", "top5_error"),
        rows=(
            ("Real images", (("fid", 1.9), ("is", 240.8), ("top1_error", 0.252), ("top5_error", 0.080))),
            ("Regression", (("fid", 15.2), ("is", 121.1), ("psnr", 27.9), ("ssim", 0.801),
                            ("top1_error", 0.383), ("top5_error", 0.173))),
            ("SR3", (("fid", 5.2), ("is", 180.1), ("psnr", 26.4), ("ssim", 0.762),
                     ("top1_error", 0.317), ("top5_error", 0.120))),
        ),
        source="Saharia et al. 2021 (arXiv 2104.07636), ImageNet 4x tables",
        human="SR3 fooled raters close to 40% of the time on ImageNet 4x.",
    ),
}


def paper_table(task_name: str | None) -> PaperTable | None:
    """The paper's table for a task name, or None when the paper has none for it."""
    return PAPER_TABLES.get(task_name or "")
