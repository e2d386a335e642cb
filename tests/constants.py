"""Values the fixtures and the tests share. Standard library only: tests/conftest.py imports
this in the pytest-xdist controller too, which runs no test and should start its workers
at once."""

from __future__ import annotations

import os

ADMIN_KEY = "test-admin-" + "k" * 24
# max_examples of the `fast` hypothesis profile (tests/conftest.py), against hypothesis's 100.
FAST_PROFILE_EXAMPLES = 20
RGB_ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
# One per pytest-xdist worker: workers share a server given by VNODE_TEST_DATABASE_URL.
TEMPLATE_DB = "vnode_test_template" + os.environ.get("PYTEST_XDIST_WORKER", "").replace("gw", "_")
