"""The only place that builds output: Rich tables, JSON, Markdown, HTML, pictures, short reprs.

Result objects show themselves (in a terminal through Rich, in a notebook) without building any
output of their own: each display method is a one-line delegation that imports its renderer here
lazily, inside the method. That import is the one allowed reference from a result type up to
`gradflow.render`; importing a result type never imports Rich or this package.

Every result type has the same three methods, each delegating to the function the command line
uses for the same output::

    @dataclass(frozen=True)
    class Report:
        def __repr__(self) -> str:  # short and informative, not the dataclass dump
            from gradflow.render.short import report_repr
            return report_repr(self)

        def __rich__(self) -> RenderableType:  # the table the CLI prints
            from gradflow.render.table import report_rich
            return report_rich(self)

        def _repr_html_(self) -> str:  # the fragment the CLI's --html page is built around
            from gradflow.render.html import report_fragment
            return report_fragment(self)

`RenderableType` comes from `rich.console` under `TYPE_CHECKING`. For a new result type, add
in this package:

- `short.py`: `<name>_repr(result) -> str`, one line such as
  `Report(6 junctions, survival 7.49×, flagged: none)`.
- the module of its table: `<name>_rich(result)`, the renderable its CLI command prints (wrap
  it in `fit_to_console` when its columns depend on the console width); the command prints
  that same renderable.
- an HTML module: `<name>_fragment(result) -> str`, one `<div class=gradflow>` with its own
  scoped `<style>` (see `html.fragment`), which a notebook shows as it is and an `--html`
  page wraps (`html.page`).

`tests/test_display.py` shows what each method is tested for.

Where each result renders:

| result | repr | table | HTML | JSON | picture |
|---|---|---|---|---|---|
| Report | short | table | html | json | depth, depth_plot |
| Comparison | short | compare | html | json | depth, depth_plot |
| CheckResult | short | check | check_html | check (and junit, github, check_markdown) | |
| Track | short | track | track_html | track | plot |
"""
