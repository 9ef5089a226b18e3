import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    MANAGER = "manager", "Manager"


# What each role may do is cumulative: a manager can do everything a member can, and so on.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.MANAGER: 2}

ROLE_DESCRIPTIONS = {
    Role.VIEWER: "Sees the team's runs, events and wallet.",
    Role.MEMBER: "Also launches, resumes and cancels runs.",
    Role.MANAGER: "Also adds and removes members and changes their roles.",
}


class Team(models.Model):
    """A group of people who launch runs together and spend from one prepaid wallet."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """One person's place in one team, with the role that decides what they may do there."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="membership_unique_per_team"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]
        ordering = ["team__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.team}"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]

    @property
    def can_launch(self) -> bool:
        return self.has_role(Role.MEMBER)

    @property
    def can_manage(self) -> bool:
        return self.has_role(Role.MANAGER)


class MembershipChange(models.Model):
    """One change to who belongs to a team or with which role: the team's audit trail.

    Rows are only ever added. The member's username is copied so the record still reads
    right after the account is deleted.
    """

    class Action(models.TextChoices):
        ADDED = "added", "added"
        REMOVED = "removed", "removed"
        ROLE_CHANGED = "role_changed", "changed the role of"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="membership_changes")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    member_username = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=Action.choices)
    old_role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    new_role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor} {self.get_action_display()} {self.member_username} in {self.team}"


class Invitation(models.Model):
    """An email address asked to join a team with a role, through a one-time link.

    The link names the row by `key` and carries a secret token; only the token's SHA-256 is
    kept, so nothing stored here rebuilds a working link. A row stays `pending` until the person
    accepts it, a manager revokes it, or a newer invitation of the same address to the same
    team replaces it; a pending row past `expires_at` is expired. Ended rows are kept: they say
    who invited whom, and they let an old link answer "already used" instead of "not found".
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        REVOKED = "revoked", "revoked"
        REPLACED = "replaced", "replaced by a newer invitation"

    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)  # lower-cased by the service
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_sha256 = models.CharField(max_length=64, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When and by whom a revoke or a re-invite ended the invitation.
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # Re-inviting an address replaces its pending invitation: one live link at a time.
            models.UniqueConstraint(
                fields=["team", "email"],
                condition=models.Q(status="pending"),
                name="invitation_one_pending_per_email",
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="invitation_role_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "accepted", "revoked", "replaced"]),
                name="invitation_status_valid",
            ),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.email} ({self.role}) to {self.team}, {self.status}"

    @property
    def is_expired(self) -> bool:
        return self.status == self.Status.PENDING and self.expires_at <= timezone.now()

    @staticmethod
    def digest(token: str) -> str:
        """What is stored of a token. The token is 256 random bits, so a fast hash is right
        (there is nothing to brute-force), as for API tokens."""
        return hashlib.sha256(token.encode()).hexdigest()
