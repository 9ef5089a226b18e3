from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing import tasks
        from portal.core.periodic import Periodic, register_periodic

        register_periodic(
            self,
            [
                Periodic(
                    name="billing: reconcile finished holds",
                    task=tasks.reconcile_billing,
                    minutes=15,
                )
            ],
        )
