"""Arguments shared by the commands that look across contexts."""

from __future__ import annotations

from typing import Annotated

import typer

TargetsArg = Annotated[
    list[str],
    typer.Argument(
        help="Contexts (MODULE:ATTRIBUTE) or a tidings.System (e.g. examples.ecommerce.system).",
        show_default=False,
        metavar="TARGET",
    ),
]
