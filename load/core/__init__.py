"""Pure code both processes import (``python -m load`` and Locust): the run's plan and
options, scenarios, the measurement codec, the exact counts and histograms, the capacity
search, the clock, the fault kinds and their accounting. No network, no gevent, no Locust."""
