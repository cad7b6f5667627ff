"""What people read: the run record and ``summary.json``, the terminal tables, report.html
and its charts, and the README's picture (``python -m load.reporting.picture``)."""
