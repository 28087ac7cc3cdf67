"""A team's own job types, outside Ferry's source, as a user writes them.

`jobs` is what the tests name in FERRY_JOBS; `progress`, types that report their
progress, is what tests/integration/jobs/test_progress.py names. `duplicate` and
`broken` exist for the tests of registration errors only: nothing else imports them.
`stack` starts the API and worker processes that run them (for the tests only).
"""

from __future__ import annotations

import os

from tests.support.processes import PROJECT_ROOT

USER_JOBS = "tests.support.user_jobs.jobs"


def user_env(**values: str) -> dict[str, str]:
    """FERRY_JOBS, and the repository on the path: Ferry's processes run in a directory
    of their own, from which `tests` is not importable otherwise."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {"FERRY_JOBS": USER_JOBS, "PYTHONPATH": path, **values}
