"""A URLconf where run_detail lives elsewhere (tests/core/test_reversing.py)."""

from django.http import HttpResponse
from django.urls import path

urlpatterns = [
    path("elsewhere/<uuid:run_id>/", lambda request, run_id: HttpResponse(), name="run_detail")
]
