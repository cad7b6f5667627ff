"""The version matrix behind `nox -s compat` (see compat/README.md)."""

# Set for each cell's pytest: where compat/pytest_plugin.py leaves the tests' load summaries.
RESULTS_DIR_VARIABLE = "COMPAT_RESULTS_DIR"
