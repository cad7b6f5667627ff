"""Code that runs inside Locust, which patches the standard library with gevent when it is
imported: the chat users, the lean WebSocket client, clock sync, the web UI tab and the
slow readers. ``load/locustfile.py`` registers their listeners, in one place and order."""
