"""What a password change ends: the person's API tokens (and, by Django, their other sessions).

Django already logs out every other session of a user whose password changes (each session
carries a hash of the password; PasswordChangeView keeps the current one). API tokens carry no
such hash, so they are revoked here, whatever changed the password: the account page, a reset
by email, the admin, `manage.py changepassword`. A rehash of the same password (Django upgrades
hashes on login) is not a change and revokes nothing.
"""

from django.contrib.auth.hashers import check_password
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from portal.core.models import ApiToken

_CHANGED = "_portal_password_changed"


def _password_changing(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    before = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True)
    old_hash = before.first()
    if old_hash is None or old_hash == instance.password:
        return
    raw = getattr(instance, "_password", None)  # set by set_password() until the save
    if raw is not None and check_password(raw, old_hash):
        return  # the same password, hashed anew
    setattr(instance, _CHANGED, True)


def _password_changed(sender, instance, created=False, **kwargs) -> None:
    if getattr(instance, _CHANGED, False):
        delattr(instance, _CHANGED)
        ApiToken.objects.filter(user=instance, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )


def connect(user_model) -> None:
    pre_save.connect(_password_changing, sender=user_model, dispatch_uid="portal-password-1")
    post_save.connect(_password_changed, sender=user_model, dispatch_uid="portal-password-2")
