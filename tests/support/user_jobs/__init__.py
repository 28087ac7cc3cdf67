"""A team's own job types, outside Ferry's source, as a user writes them.

`jobs` is what the tests name in FERRY_JOBS. `duplicate` and `broken` exist for the
tests of registration errors only: nothing else imports them.
"""
