"""The suite's fixtures come from the harness's pytest plugin (harness/pytest_plugin.py);
compat/identity_plugin.py keeps the opt-in identity cells out of every run without
``--identity``."""

pytest_plugins = ["harness.pytest_plugin", "compat.identity_plugin"]
