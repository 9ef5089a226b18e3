"""API tokens and idempotency records now belong to the core app (see core 0001): they leave
this app's migration state; their tables are untouched."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0002_api_tokens_and_idempotency'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name='ApiToken'),
                migrations.DeleteModel(name='IdempotentRequest'),
            ],
        ),
    ]
