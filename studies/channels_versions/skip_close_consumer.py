"""EXPERIMENT (not the tutorial, not a supported setting): the tutorial's async consumer
without the thread hop channels 4.2 added to every event it handles.

Selected by its dotted path (from the checkout's root)::

    CHAT_CONSUMER=studies.channels_versions.skip_close_consumer.ChatConsumer
    python -m load capacity --consumer studies.channels_versions.skip_close_consumer.ChatConsumer

The tutorial's consumer in app/chat/ is untouched, and the app never names this module.

Since channels 4.2, ``AsyncConsumer.dispatch`` awaits ``aclose_old_connections()`` before
each handler: Django's ``close_old_connections`` run in a worker thread through
``sync_to_async``. It gives a long-lived consumer what Django gives every request: database
connections past ``CONN_MAX_AGE`` or left broken are closed before the handler runs, so
ORM calls made from async code (which Channels does not wrap) do not keep stale
connections. The chat's ``chat.message`` handler only writes to its socket, so for that
event, one per delivery, the hop buys nothing; every other event (connect, receive,
disconnect) still gets it. studies/channels_versions/README.md has the measurement.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name

from chat.consumers import ChatConsumer as TutorialChatConsumer


class ChatConsumer(TutorialChatConsumer):
    """The tutorial's ChatConsumer; group events listed in ``events_without_database``
    skip the per-event ``aclose_old_connections`` of channels >= 4.2."""

    # Event types whose handlers never touch the database. Adding one whose handler does
    # (an ORM call, a session or user lookup) would let it run on a connection Django
    # should have closed first: the risk this experiment takes.
    events_without_database = frozenset({"chat.message"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is not None and message["type"] in self.events_without_database:
            await handler(message)
            return
        # Everything else goes through Channels' own dispatch, hop included.
        await super().dispatch(message)
