"""``python -m load run|bench|capacity|replay|worker``: starting the stacks, running Locust
as a subprocess, sampling the servers and the machine, injecting faults, the search loop."""
