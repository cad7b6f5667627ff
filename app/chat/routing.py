# chat/routing.py
from django.conf import settings
from django.urls import re_path
from django.utils.module_loading import import_string

from mysite.environment import EXPERIMENTAL_CONSUMERS

from . import consumers

# CHAT_CONSUMER picks tutorial part 3's async consumer (default) or part 2's sync one;
# an experimental value (for measurements only) names a class under load/experiments/.
if settings.CHAT_CONSUMER in EXPERIMENTAL_CONSUMERS:
    ChatConsumer = import_string(EXPERIMENTAL_CONSUMERS[settings.CHAT_CONSUMER])
else:
    ChatConsumer = {
        "async": consumers.ChatConsumer,
        "sync": consumers.SyncChatConsumer,
    }[settings.CHAT_CONSUMER]

# The tutorial routes r"ws/chat/(?P<room_name>\w+)/$". Any room name is routed here
# instead, so that the consumer can refuse a name that cannot be a group name with a
# 403, where an unrouted path would fail the handshake with a 500.
websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>[^/]+)/$", ChatConsumer.as_asgi()),
]
