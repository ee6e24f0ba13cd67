"""Command-line tools: ``python -m gpen_core`` (cli), the benchmark and its plot."""
