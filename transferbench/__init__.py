"""transferbench's application layer: the ``transferbench`` command and its study commands.

``harness`` trains and stores runs, ``analysis`` turns curves into tables and figures; this package
is the only place that puts the two together (``harness`` never imports ``analysis``).
"""
