from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        post_migrate.connect(ensure_reconcile_schedule, sender=self)


def ensure_reconcile_schedule(*, using="default", **kwargs) -> None:
    """Create the reconciliation schedule once (post_migrate runs on every migrate and flush).

    get_or_create by name, so an operator's change to the schedule in the admin is kept.
    """
    from django.db import connections
    from django_q.models import Schedule

    from billing.tasks import RECONCILE_SCHEDULE_NAME

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # a partial migrate (e.g. `migrate billing`) before django_q's tables exist
    Schedule.objects.using(using).get_or_create(
        name=RECONCILE_SCHEDULE_NAME,
        defaults={
            "func": "billing.tasks.reconcile_billing",
            "schedule_type": Schedule.MINUTES,
            "minutes": 15,
            "repeats": -1,
        },
    )
