"""Super-resolution tasks: the SR3 paper's presets and custom integer scales."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """An SR task: a scale factor and, for the paper's tasks, fixed LR/HR sizes."""

    name: str
    scale: int
    lr_size: int | None = None  # square LR side, None = keep the image's own size
    hr_size: int | None = None  # square HR side, None = keep the image's own size

    @property
    def fixed_size(self) -> bool:
        """True when HR images are prepared to one square size (the paper's tasks)."""
        return self.hr_size is not None


# The SR3 paper's tasks (protocols.md): LR -> HR, square images.
PAPER_TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("faces-16-128", 8, 16, 128),
        Task("faces-64-256", 4, 64, 256),
        Task("faces-64-512", 8, 64, 512),
        Task("faces-256-1024", 4, 256, 1024),
        Task("imagenet-64-256", 4, 64, 256),
    )
}


def resolve_task(name: str | None = None, scale: int | None = None) -> Task:
    """Return the named paper task, or a custom task of the given integer scale."""
    if name is not None:
        if name in PAPER_TASKS:
            task = PAPER_TASKS[name]
            if scale is not None and scale != task.scale:
                raise ValueError(f"--scale {scale} contradicts task {name!r} (scale {task.scale}); give one of them")
            return task
        if name.startswith("x") and name[1:].isdigit():
            return resolve_task(None, int(name[1:]))
        known = ", ".join(sorted(PAPER_TASKS))
        raise ValueError(f"unknown task {name!r}; known tasks: {known}, or use --scale N")
    if scale is None:
        raise ValueError("give a task (--task NAME) or a scale (--scale N)")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"--scale must be a positive integer, got {scale!r}")
    return Task(f"x{int(scale)}", int(scale))
