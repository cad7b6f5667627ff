"""A consumer with a bug people write: the sender kept on the class, so every socket of the
process names whoever connected last. The logged-in load tests run it as the positive
control of ``misattributed`` (a count that cannot fail proves nothing):

    CHAT_CONSUMER=load.tests.misattributing_consumer.ChatConsumer
"""

import json

from chat import consumers


class ChatConsumer(consumers.ChatConsumer):
    username = ""

    async def connect(self):
        # The bug: type(self), not self. One attribute for every socket of the process.
        type(self).username = self.scope["user"].get_username()
        await super().connect()

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = consumers.read_message(text_data, bytes_data)
        except consumers.BadFrame as error:
            await self.send(text_data=json.dumps({"error": str(error)}))
            return
        await self.channel_layer.group_send(
            self.room_group_name,
            {"type": "chat.message", "message": message, "user": type(self).username},
        )
