"""The WSGI application (`gunicorn portal.wsgi`).

Everything a request would import on its way (the URLconfs, their views, forms and serializers)
is imported here, when a worker starts, and then moved out of the garbage collector's sight
(`gc.freeze`): those ~120,000 long-lived objects never become garbage, yet every full
collection walked them all, a pause of ~40 ms that stalled each request in flight in the
worker (`make bench`: the webhook intake's open-loop tail). After the freeze a full collection
walks only what requests made.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

get_resolver().url_patterns  # noqa: B018 - imports every URLconf and view now
gc.collect()
gc.freeze()
