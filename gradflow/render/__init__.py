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

Then add the type to `RESULT_TYPES` in `tests/test_display.py` and test its three outputs as
the others are tested there (structure and numbers against the result's own fields);
`test_each_display_method_is_a_lazy_one_line_delegation_to_render` already holds every type
exported from `gradflow` to this pattern.

A new JSON format gets its JSON Schema in `gradflow/schemas/<format>.schema.json` (`$id` and
the `schema` const both `gradflow/<format>@<version>`, the constant its writer uses), its
writer's constant in `WRITTEN` in `tests/test_schemas.py` with a test that validates real
output, and the schema's digest in `gradflow/schemas/digests.json` (the failing test prints
it). A new version of a format is a new `$id`, const and constant, and one more digest line.
`docs/api.md` lists whatever `gradflow.__all__` exports: regenerate it with
`python -m scripts.api_docs`.

Where each result renders:

| result | repr | table | HTML | JSON | picture |
|---|---|---|---|---|---|
| Report | short | table | html | json | depth, depth_plot |
| Comparison | short | compare | html | json | depth, depth_plot |
| CheckResult | short | check | check_html | check (and junit, github, check_markdown) | |
| Track | short | track | track_html | track | plot |
| WatchLog | short | show (track's table) | show (track_html's table) | show | plot |
| TrackArms | short | arms | arms | arms | plot (plot_arms) |
"""
