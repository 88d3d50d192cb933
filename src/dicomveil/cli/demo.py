"""``dicomveil demo``: write synthetic studies full of fake PHI, to try dicomveil on."""

from __future__ import annotations

from pathlib import Path

import typer

from dicomveil.cli.common import err_console, show

__all__ = ["register"]


def demo(
    folder: Path = typer.Argument(..., help="Where to write the synthetic studies."),
    patients: int = typer.Option(2, "--patients", min=1, help="Number of fake patients."),
    series: int = typer.Option(2, "--series", min=1, help="Series per study."),
    images: int = typer.Option(5, "--images", min=1, help="Images per series."),
    size: int = typer.Option(64, "--size", min=8, help="Rows and columns of each image."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same files."),
) -> None:
    """Write synthetic CT studies with fake names, IDs, dates and addresses everywhere.

    Example: dicomveil demo ./demo && dicomveil deid ./demo ./out && dicomveil verify ./demo ./out
    """
    from dicomveil.demo import write_demo_study

    paths = write_demo_study(
        folder,
        patients=patients,
        series_per_study=series,
        images_per_series=images,
        rows=size,
        columns=size,
        seed=seed,
    )
    err_console.print(f"wrote {len(paths)} synthetic DICOM file(s) with fake PHI to {show(folder)}")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)
