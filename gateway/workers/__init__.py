"""``workers: N``: several gateway processes on the same ports behind one merged ``/metrics``.

``supervisor.py`` starts and restarts the workers and serves the public endpoint, ``worker.py`` is a
worker's entry point, ``snapshot.py`` turns a worker's metric state into data and ``merge.py`` merges
those into one exposition. With ``workers: 1`` (the default) none of this is imported.
"""
