from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    label = "schedules"
    verbose_name = "Schedules"

    def ready(self) -> None:
        from portal.core.periodic import Periodic, register_periodic
        from schedules import tasks

        # One tick a minute for every schedule (docs/architecture.md says why not one
        # django-q2 cron schedule per schedule).
        register_periodic(
            self, [Periodic(name="schedules: tick", task=tasks.tick, minutes=1, at_second=1)]
        )
