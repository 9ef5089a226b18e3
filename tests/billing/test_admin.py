"""The billing models in the Django admin: the ledger is there to read, never to edit."""

import pytest

from billing.models import Transfer
from tests.factories import UserFactory, top_up

pytestmark = pytest.mark.django_db


def test_the_django_admin_shows_the_ledger_read_only(team, client_for):
    # given a superuser and a ledger
    top_up(team, 5000)
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client = client_for(admin)
    transfer = Transfer.objects.get()
    # then the lists and the detail pages open, but nothing can be added, changed or deleted
    for model in ("account", "transfer", "hold", "reconciliation"):
        assert client.get(f"/admin/billing/{model}/").status_code == 200, model
        assert client.get(f"/admin/billing/{model}/add/").status_code == 403, model
    assert client.get(f"/admin/billing/transfer/{transfer.pk}/change/").status_code == 200
    assert client.get(f"/admin/billing/transfer/{transfer.pk}/delete/").status_code == 403
    client.post(f"/admin/billing/transfer/{transfer.pk}/change/", {"amount_cents": "1"})
    transfer.refresh_from_db()
    assert transfer.amount_cents == 5000
