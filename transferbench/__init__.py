"""transferbench's application layer: commands that join the harness (training) and the analysis."""
