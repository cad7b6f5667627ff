"""``python services.py serve --layer nats --asgi uvicorn``: the chat in the foreground on
any layer, with a throw-away server behind the layer when its URL variable is unset
(nox -s serve). The code is harness/chat.py's ``serve``."""

import sys

from harness.chat import serve

if __name__ == "__main__":
    sys.exit(serve())
