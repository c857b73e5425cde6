"""Makes API keys with djangorestframework-api-key in a throw-away SQLite
database and prints them as JSON lines: the key as the integration holds it,
and the rows the library stores (prefix, hashed_key, created)."""
import json, sys, tempfile, os
import django
from django.conf import settings

db = os.path.join(tempfile.mkdtemp(), "drf.sqlite3")
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "rest_framework_api_key"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}},
    USE_TZ=True,
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from rest_framework_api_key.models import APIKey

for n in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    api_key, key = APIKey.objects.create_key(name=f"drf key {n}")
    print(json.dumps({"key": key, "prefix": api_key.prefix, "hashed_key": api_key.hashed_key, "created": api_key.created.isoformat(), "name": api_key.name}))
