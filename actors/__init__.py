"""What `dramatiq actors` imports to start a Ferry worker.

The job types are declared as actors on the broker the environment configures
(`ferry.worker.boot`).
"""

from ferry.worker.boot import current_broker

current_broker()
