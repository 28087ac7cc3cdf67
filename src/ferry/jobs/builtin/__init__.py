"""Ferry's built-in job types, one module per type: importing them registers them."""

from ferry.jobs.builtin import data_processing, email, sleep, webhook

__all__ = ["data_processing", "email", "sleep", "webhook"]
