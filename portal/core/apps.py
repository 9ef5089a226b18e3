from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: REST plumbing, tokens, queueing, schedules, admin bases.

    It imports no other app of the portal (import-linter checks it).
    """

    name = "portal.core"
    label = "core"
    verbose_name = "API access"

    def ready(self) -> None:
        # The secrets-at-rest checks and the OpenAPI extension (bearer scheme) register
        # themselves when their modules are imported.
        from django.contrib.auth import get_user_model

        import portal.core.checks
        import portal.core.rest.schema  # noqa: F401
        from portal.core import passwords, tasks
        from portal.core.periodic import Periodic, register_periodic

        passwords.connect(get_user_model())
        register_periodic(
            self,
            [
                Periodic(
                    name="api: purge expired idempotency keys",
                    task=tasks.purge_idempotency_keys,
                    minutes=60,
                ),
                Periodic(
                    name="logins: purge old failed logins",
                    task=tasks.purge_login_failures,
                    minutes=24 * 60,
                ),
            ],
        )
