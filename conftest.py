"""The suite's fixtures come from the harness's pytest plugin (harness/pytest_plugin.py)."""

pytest_plugins = ["harness.pytest_plugin"]
