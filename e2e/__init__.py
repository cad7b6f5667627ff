"""Browser tests: the chat in headless Chromium, on every channel layer (see README.md)."""
