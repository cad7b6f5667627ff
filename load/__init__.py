"""Locust WebSocket load scenarios and the channel-layer benchmark (``python -m load ...``).

The folders say which process runs the code:

* ``core/``: pure, imported by both processes and unit-tested without a network: the run's
  plan and options, scenarios, the measurement codec, the exact counts and histograms, the
  capacity search, the clock, fault kinds and their accounting.
* ``inlocust/``: runs inside Locust, which patches the standard library with gevent when
  imported: the users, the lean WebSocket client, clock sync, the web UI tab, slow readers.
* ``commands/``: ``python -m load run|bench|capacity|replay|worker``: starting stacks, running
  Locust, sampling the servers, injecting faults, the search loop.
* ``reporting/``: the run record, ``summary.json``, report.html and its charts.

``locustfile.py`` (Locust's entry), ``probe.py`` (an independent asyncio client for the
fidelity cross-check) and ``client_cost.py`` stay at the top: their paths are public.
load/tests/test_layout.py checks that nothing outside ``inlocust/`` imports gevent or Locust.
"""
