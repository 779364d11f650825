"""Test settings: fast hashing, eager Celery unless an integration test starts a real worker."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = "test-only-secret-key-not-for-production-use-0123456789"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
DOORSTEP_ENCRYPTION_KEYS = ["x8vI0Pq4Xy2b8w5m3YQ3nZyR7oP1WcJ6D2l0aKqTg0s="]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["*"]

# Static files come from the finders in tests (no collectstatic), so whitenoise has no root to scan.
STATIC_ROOT = None

# Tests keep their model files and CA bundles in pytest's temporary folders.
DOORSTEP_FILE_DIRS = [*DOORSTEP_FILE_DIRS, __import__("tempfile").gettempdir()]  # noqa: F405
