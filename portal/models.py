import hashlib

from django.conf import settings
from django.db import models


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


class ApiToken(models.Model):
    """One personal token a person made to call the REST API as themselves.

    The token itself is shown once, when it is made; only its SHA-256 is kept. A token is 256
    random bits, so a fast hash is right here: there is nothing to brute-force, and the lookup
    by hash is one indexed query per request (a slow password hash would cost ~100 ms each).
    `prefix` is the token's public beginning, enough for a person to tell their tokens apart.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    secret_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute per token (see services.api_token_mark_used), not per call.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class IdempotentRequest(models.Model):
    """One API request made with an `Idempotency-Key`, and the response it got.

    The row is inserted (and committed) before the request is carried out: the unique
    (user, key) constraint lets exactly one of any number of concurrent requests with one key
    go ahead. Until `completed_at` is set the request is in flight; its reservation lasts until
    `lease_until`, after which a retry may take it over (the first holder crashed). A completed
    row replays its stored response until `expires_at` (24 h); a scheduled job deletes it after.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    key = models.CharField(max_length=128)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=512)
    # SHA-256 of method, path and the canonical (sorted-key) JSON body.
    fingerprint = models.CharField(max_length=64)
    # Who holds the reservation: a random value per attempt, so only the holder completes it.
    holder = models.UUIDField()
    lease_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_unique_key"),
        ]

    def __str__(self) -> str:
        state = "done" if self.completed_at else "in flight"
        return f"{self.method} {self.path} [{self.key}] ({state})"
