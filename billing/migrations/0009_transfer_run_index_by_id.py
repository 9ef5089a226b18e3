"""The transfers' run index gains the id: a run's entries come in order from it (the ledger's
expanded run, a page at a time) and "has this run an entry newer than the cursor?" is one seek.
The new index is built before the old one goes, so run lookups always have one."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0008_transfer_top_up_reference_index"),
        ("portal", "0003_api_models_move_to_core"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="transfer",
            index=models.Index(fields=["run_id", "id"], name="billing_xfer_run_id"),
        ),
        migrations.RemoveIndex(
            model_name="transfer",
            name="billing_xfer_run",
        ),
    ]
