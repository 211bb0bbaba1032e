"""Rendering of `gradflow blocks`: the junction listing."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from gradflow.render.json import dumps
from gradflow.render.markdown import junction_cell
from gradflow.render.table import console, nested_name, nested_sentence, nesting_depths, skip_label


def print_blocks(source: str, rows: list[dict[str, Any]], format: Any) -> None:
    if str(getattr(format, "value", format)) == "json":
        print(dumps({"schema": "gradflow/blocks@1", "source": source, "junctions": rows}))
        return
    # A junction nested inside another (nested_in) is marked as `inspect` marks it. An .onnx
    # graph read statically has no nested_in: its junctions are listed unmarked.
    depths = nesting_depths([(r["name"], r.get("nested_in")) for r in rows])
    summary = nested_sentence(depths)
    if str(getattr(format, "value", format)) == "markdown":
        print(f"### gradflow blocks · `{source}`\n")
        print("| # | junction | skip | params | block |\n|--:|---|---|--:|---|")
        for r, depth in zip(rows, depths):
            block = ", ".join(r["block_modules"][:6])
            print(f"| {r['index']} | {junction_cell(r['name'], depth)} | {r['skip']} | "
                  f"{r['params']:,} | {block} |")
        if summary:
            print(f"\n{summary}")
        return
    out = console()
    if not rows:
        out.print("No residual junction found.", style="yellow")
        return
    table = Table(
        title=f"gradflow blocks · {source} · {len(rows)} junctions",
        caption=summary or None,
        title_justify="left",
        caption_justify="left",
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("junction", overflow="fold", max_width=40)
    table.add_column("skip")
    table.add_column("params", justify="right")
    table.add_column("block passes through", overflow="fold", max_width=60)
    table.add_column("location", style="dim", overflow="fold", max_width=40)
    for r, depth in zip(rows, depths):
        blocks = r["block_modules"]
        shown = ", ".join(blocks[:5]) + (f", … (+{len(blocks) - 5})" if len(blocks) > 5 else "")
        table.add_row(
            str(r["index"]),
            nested_name(r["name"], depth),
            skip_label(r["skip"]),
            f"{r['params']:,}",
            shown,
            r.get("location") or "–",
        )
    out.print(table)
