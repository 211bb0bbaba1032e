"""Rendering of `gradflow blocks`: the junction listing."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from gradflow.render.json import dumps
from gradflow.render.table import console, skip_label


def print_blocks(source: str, rows: list[dict[str, Any]], format: Any) -> None:
    if str(getattr(format, "value", format)) == "json":
        print(dumps({"schema": "gradflow/blocks@1", "source": source, "junctions": rows}))
        return
    if str(getattr(format, "value", format)) == "markdown":
        print(f"### gradflow blocks · `{source}`\n")
        print("| # | junction | skip | params | block |\n|--:|---|---|--:|---|")
        for r in rows:
            block = ", ".join(r["block_modules"][:6])
            print(f"| {r['index']} | `{r['name']}` | {r['skip']} | {r['params']:,} | {block} |")
        return
    out = console()
    if not rows:
        out.print("No residual junction found.", style="yellow")
        return
    table = Table(
        title=f"gradflow blocks · {source} · {len(rows)} junctions",
        title_justify="left",
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("junction", overflow="fold", max_width=40)
    table.add_column("skip")
    table.add_column("params", justify="right")
    table.add_column("block passes through", overflow="fold", max_width=60)
    table.add_column("location", style="dim", overflow="fold", max_width=40)
    for r in rows:
        blocks = r["block_modules"]
        shown = ", ".join(blocks[:5]) + (f", … (+{len(blocks) - 5})" if len(blocks) > 5 else "")
        table.add_row(
            str(r["index"]),
            r["name"],
            skip_label(r["skip"]),
            f"{r['params']:,}",
            shown,
            r.get("location") or "–",
        )
    out.print(table)
