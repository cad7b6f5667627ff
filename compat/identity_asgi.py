"""The chat's ASGI application in the Channels 2/3-era shape: a ProtocolTypeRouter WITHOUT
an "http" key, so Channels itself supplies the HTTP handler (channels.http.AsgiHandler).

With channels 3.0.0 to 3.0.2 that handler was one shared instance for every HTTP
connection, which kept each request's scope and ``send`` on itself (CVE-2020-35681,
PYSEC-2021-113): under concurrent requests an answer, ``Set-Cookie: sessionid`` included,
could go to another client. 3.0.3 made one handler per connection. The identity cells
(compat/identity.py, compat/test_identity.py) serve this module with Daphne from app/,
with the checkout's root on PYTHONPATH; the app itself routes "http" explicitly
(app/mysite/asgi.py), which never had the problem. Not for channels 4, which no longer
adds an HTTP handler by itself.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
