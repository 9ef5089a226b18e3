"""API tokens and idempotency records move from the teams app (label "portal") to the core.

The tables stay where they are (`portal_apitoken`, `portal_idempotentrequest`): this migration
only tells Django's migration state that the core owns them now, and the teams app's 0003 drops
them from its own state. A fresh database gets the tables from portal 0002, as before.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('portal', '0002_api_tokens_and_idempotency'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='ApiToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('prefix', models.CharField(max_length=16)),
                        ('secret_sha256', models.CharField(editable=False, max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'portal_apitoken',
                        'verbose_name': 'API token',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='IdempotentRequest',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=128)),
                        ('method', models.CharField(max_length=8)),
                        ('path', models.CharField(max_length=512)),
                        ('fingerprint', models.CharField(max_length=64)),
                        ('holder', models.UUIDField()),
                        ('lease_until', models.DateTimeField()),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('expires_at', models.DateTimeField(db_index=True)),
                        ('completed_at', models.DateTimeField(blank=True, null=True)),
                        ('response_status', models.PositiveSmallIntegerField(blank=True, null=True)),
                        ('response_body', models.JSONField(blank=True, null=True)),
                        ('response_headers', models.JSONField(blank=True, default=dict)),
                        ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'portal_idempotentrequest',
                        'constraints': [models.UniqueConstraint(fields=('user', 'key'), name='idempotent_request_unique_key')],
                    },
                ),
            ],
        ),
    ]
