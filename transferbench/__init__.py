"""transferbench's application layer: the command-line commands, built on harness/ and analysis/."""
