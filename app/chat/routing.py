# chat/routing.py
from typing import Any

from django.conf import settings
from django.urls import re_path
from django.utils.module_loading import import_string

from . import consumers

# CHAT_CONSUMER picks tutorial part 3's async consumer (default) or part 2's sync one,
# or names a consumer class by its dotted path (a variant measured beside them).
ChatConsumer: type[Any] = {
    "async": consumers.ChatConsumer,
    "sync": consumers.SyncChatConsumer,
}.get(settings.CHAT_CONSUMER) or import_string(settings.CHAT_CONSUMER)

# The tutorial routes r"ws/chat/(?P<room_name>\w+)/$". Any room name is routed here
# instead, so that the consumer can refuse a name that cannot be a group name with a
# 403, where an unrouted path would fail the handshake with a 500.
websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>[^/]+)/$", ChatConsumer.as_asgi()),
]
