"""The tests' settings: the portal's own, with development mode turned on explicitly and fixed
keys (the defaults are production-safe: DEBUG off, no key).

Set in the environment rather than here, so the processes the tests start (a django-q2 worker,
gunicorn, manage.py) run with the same keys and can read what this process encrypted.
"""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-6f1d2c9a8b7e4f3a2d1c0b9a8e7f6d5c4b3a")
# A fixed Fernet key (32 bytes, url-safe base64), for tests only.
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdHMtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleSE=")

from portal.settings import *  # noqa: F403
