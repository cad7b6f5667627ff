"""Locust WebSocket load scenarios and the channel-layer benchmark (``python -m load ...``).

Modules that never import Locust (so pytest and asyncio code can use them):
``codec`` (the measurement text inside a chat message), ``stats`` (mergeable counters and
histograms, the exact expected/lost arithmetic), ``wire`` (a lean WebSocket client on a
plain socket), ``scenarios`` (who joins which room, when), ``report`` (summary table and
report.html), ``probe`` (an independent asyncio client for the fidelity cross-check) and
``cli`` (``run`` and ``bench``). ``gevent_users`` and ``locustfile`` are the Locust side.
"""
