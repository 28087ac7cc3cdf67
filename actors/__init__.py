"""Ferry's Dramatiq actors, one module per job type.

`dramatiq actors` imports this package: the handlers register themselves and
are declared as actors on the broker configured by the environment.
"""

from actors import data_processing, email, sleep, webhook

__all__ = ["data_processing", "email", "sleep", "webhook"]


def _install() -> None:
    from ferry.broker import current_broker

    current_broker()


_install()
