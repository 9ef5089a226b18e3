"""Factories for every model the tests build. One file, so a helper is easy to find."""

import uuid

import factory
from django.contrib.auth import get_user_model

from portal.teams.models import Membership, Role, Team

PASSWORD = "test-pass-2026"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.replace("-", " ").title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class BillingAdminFactory(UserFactory):
    """A person with the billing.manage_wallets permission, given directly."""

    @factory.post_generation
    def billing_permission(obj, create, extracted, **kwargs):
        if create:
            from django.contrib.auth.models import Permission

            obj.user_permissions.add(
                Permission.objects.get(content_type__app_label="billing", codename="manage_wallets")
            )


# Ledger rows are never built by factories: money only moves through billing.services, so every
# test's ledger satisfies the invariants. These helpers are the short way to call them.


def top_up(team, cents, *, key=None, reference="test top-up"):
    from billing.services import wallet_top_up

    transfer, _created = wallet_top_up(
        team=team,
        amount_cents=cents,
        reference=reference,
        actor="command:tests",
        idempotency_key=key or f"test:{uuid.uuid4()}",
    )
    return transfer


def place_hold(team, cents, *, run_id=None):
    from billing.services import hold_place

    run_id = run_id or uuid.uuid4()
    return hold_place(
        team=team,
        amount_cents=cents,
        reference=f"run:{run_id}",
        run_id=run_id,
        caused_by=f"run:{run_id}",
    )


def ledger_run(team, user, task, *, steps=0, price=5, held=100, release=True, status=None):
    """A run of `team` launched by `user`, with its hold, `steps` charged steps and (when
    `release`) the rest of its hold released."""
    from billing import services
    from runs.models import Run, RunStatus

    run_id = uuid.uuid4()
    Run.objects.create(
        id=run_id,
        team=team,
        created_by=user,
        machine_id="vm-linux-1",
        task=task,
        price_cents=price,
        held_cents=held,
        charged_cents=steps * price,
        steps_completed=steps,
        idempotency_key=f"portal-run-{run_id}",
        status=status or (RunStatus.SUCCEEDED if release else RunStatus.RUNNING),
    )
    hold = place_hold(team, held, run_id=run_id)
    if steps:
        services.hold_capture_steps(
            reference=hold.reference,
            steps=list(range(1, steps + 1)),
            amount_cents=price,
            caused_by=f"run:{run_id}",
        )
    if release:
        services.hold_release(reference=hold.reference, caused_by=f"run:{run_id}")
    return run_id
