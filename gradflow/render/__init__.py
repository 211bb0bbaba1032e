"""The only place that builds output: Rich tables, JSON, Markdown."""
