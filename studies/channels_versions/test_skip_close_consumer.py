"""The skip-close consumer (studies/channels_versions/skip_close_consumer.py): it still
speaks the chat's protocol, and it skips channels' per-event close_old_connections for
chat.message events only."""

from __future__ import annotations

import json

import pytest
from channels import consumer as channels_consumer
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import re_path

from mysite import environment
from studies.channels_versions.skip_close_consumer import ChatConsumer

SKIP_CLOSE = "studies.channels_versions.skip_close_consumer.ChatConsumer"


def test_chat_consumer_accepts_the_variant_by_its_dotted_path():
    assert environment.chat_consumer({"CHAT_CONSUMER": SKIP_CLOSE}) == SKIP_CLOSE


@pytest.mark.skipif(
    not hasattr(channels_consumer, "aclose_old_connections"),
    reason="channels < 4.2 has no per-event close_old_connections to skip",
)
async def test_skips_the_hop_for_chat_message_only(settings, monkeypatch):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    hops: list[str] = []

    async def counted() -> None:
        hops.append("hop")

    # AsyncConsumer.dispatch looks the function up in channels.consumer's namespace.
    monkeypatch.setattr(channels_consumer, "aclose_old_connections", counted)
    application = URLRouter([re_path(r"ws/chat/(?P<room_name>[^/]+)/$", ChatConsumer.as_asgi())])
    communicator = WebsocketCommunicator(application, "/ws/chat/skipclose/")
    connected, _ = await communicator.connect()
    assert connected
    after_connect = len(hops)
    assert after_connect >= 1  # websocket.connect still goes through Channels' dispatch

    await communicator.send_to(text_data=json.dumps({"message": "hi"}))
    assert json.loads(await communicator.receive_from(timeout=5)) == {"message": "hi"}
    # One hop for websocket.receive, none for the chat.message delivered back.
    assert len(hops) == after_connect + 1

    await get_channel_layer().group_send("chat_skipclose", {"type": "chat.message", "message": "x"})
    assert json.loads(await communicator.receive_from(timeout=5)) == {"message": "x"}
    assert len(hops) == after_connect + 1
    await communicator.disconnect()
