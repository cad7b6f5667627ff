# chat/consumers.py
import json
import logging
import re

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from django.conf import settings

logger = logging.getLogger(__name__)

# Group names may hold only ASCII letters, digits, hyphens, underscores and periods, and
# must be shorter than 100 characters. The group is f"chat_{room_name}", so a room name
# may be at most 94 of those characters. The index page checks the same rule in JS.
ROOM_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,94}")


def is_valid_room_name(room_name):
    return ROOM_NAME_PATTERN.fullmatch(room_name) is not None


class BadFrame(Exception):
    """A frame the chat will not broadcast; its text is sent back to the sender."""


def read_message(text_data=None, bytes_data=None):
    """Return the ``message`` of a frame ``{"message": "<string>"}`` or raise BadFrame."""
    if text_data is None:
        raise BadFrame('binary frames are not accepted: send text such as {"message": "hi"}')
    try:
        data = json.loads(text_data)
    except ValueError:
        raise BadFrame('frame is not JSON: send {"message": "<text>"}') from None
    if not isinstance(data, dict):
        raise BadFrame('frame is not a JSON object: send {"message": "<text>"}')
    if "message" not in data:
        raise BadFrame('frame has no "message" key: send {"message": "<text>"}')
    message = data["message"]
    if not isinstance(message, str):
        raise BadFrame(f'"message" must be a string, not {type(message).__name__}')
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(message) > limit:
        raise BadFrame(
            f'"message" has {len(message)} characters; the limit is {limit} '
            "(CHAT_MAX_MESSAGE_CHARS)"
        )
    return message


def sender(scope):
    """``{"user": <username>}`` when the socket's user is logged in, else ``{}``.

    Not in the tutorial: a logged-in sender's name goes with the message, so every room
    member sees who wrote it; an anonymous sender's broadcast stays the tutorial's."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return {"user": user.get_username()}
    return {}


def sender_of(event):
    """The ``user`` of a chat.message event, as a dict to merge into the frame."""
    return {"user": event["user"]} if "user" in event else {}


class ChatConsumer(AsyncWebsocketConsumer):
    """Tutorial part 3: the asynchronous consumer (the default, CHAT_CONSUMER=async)."""

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Refuse (HTTP 403) a room whose name cannot be a group name, instead of
        # letting group_add raise and the handshake fail with a 500.
        if not is_valid_room_name(self.room_name):
            await self.close()
            return

        # Join room group
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)

        await self.accept()

    async def disconnect(self, close_code):
        # Leave room group (a refused room never joined one)
        if is_valid_room_name(self.room_name):
            await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    # Receive message from WebSocket
    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = read_message(text_data, bytes_data)
        except BadFrame as error:
            logger.warning("room %r: rejected a frame: %s", self.room_name, error)
            await self.send(text_data=json.dumps({"error": str(error)}))
            return

        # Send message to room group
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message, **sender(self.scope)}
        )

    # Receive message from room group
    async def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket (with its sender's name, if the sender was logged in)
        await self.send(text_data=json.dumps({"message": message, **sender_of(event)}))


class SyncChatConsumer(WebsocketConsumer):
    """Tutorial part 2: the synchronous consumer (CHAT_CONSUMER=sync)."""

    def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        if not is_valid_room_name(self.room_name):
            self.close()
            return

        # Join room group
        async_to_sync(self.channel_layer.group_add)(self.room_group_name, self.channel_name)

        self.accept()

    def disconnect(self, close_code):
        # Leave room group
        if is_valid_room_name(self.room_name):
            async_to_sync(self.channel_layer.group_discard)(self.room_group_name, self.channel_name)

    # Receive message from WebSocket
    def receive(self, text_data=None, bytes_data=None):
        try:
            message = read_message(text_data, bytes_data)
        except BadFrame as error:
            logger.warning("room %r: rejected a frame: %s", self.room_name, error)
            self.send(text_data=json.dumps({"error": str(error)}))
            return

        # Send message to room group
        async_to_sync(self.channel_layer.group_send)(
            self.room_group_name, {"type": "chat.message", "message": message, **sender(self.scope)}
        )

    # Receive message from room group
    def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket (with its sender's name, if the sender was logged in)
        self.send(text_data=json.dumps({"message": message, **sender_of(event)}))
