from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.db.models import Q
from django.utils.text import slugify

from portal.teams.models import ROLE_DESCRIPTIONS, Role, Team

User = get_user_model()


ROLE_CHOICES = [(role.value, f"{role.label} — {ROLE_DESCRIPTIONS[role]}") for role in Role]

# Fixed words right under /teams/ in portal/urls.py. A team with one as its address could never
# reach its dashboard: /teams/new/ is matched by the create-team page first. A test checks this
# list against the URLconf.
RESERVED_TEAM_SLUGS = frozenset({"new"})
TEAM_SLUG_MAX_LENGTH = Team._meta.get_field("slug").max_length


def reserved_team_slug_error(slug: str) -> str | None:
    if slug in RESERVED_TEAM_SLUGS:
        return f"The address “{slug}” is used by the portal's own pages; choose another."
    return None


def team_slug_from_name(name: str) -> str:
    """The name as an address, cut to fit the column (PostgreSQL refuses a longer value; SQLite
    would store it). Two long names can then share an address: the form's check for a taken
    address runs on the cut one."""
    return slugify(name)[:TEAM_SLUG_MAX_LENGTH].rstrip("-")


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(
        max_length=TEAM_SLUG_MAX_LENGTH,
        required=False,
        label="Address",
        help_text="Used in the team's URLs, e.g. /teams/research/. Left empty, it follows the name.",
    )

    def clean(self):
        cleaned = super().clean() or self.cleaned_data
        slug = cleaned.get("slug") or team_slug_from_name(cleaned.get("name") or "")
        if not slug:
            self.add_error("slug", "Give the team an address of letters, digits or dashes.")
        elif reserved := reserved_team_slug_error(slug):
            self.add_error("slug", reserved)
        elif Team.objects.filter(slug=slug).exists():
            self.add_error("slug", f"A team with the address “{slug}” already exists.")
        cleaned["slug"] = slug
        return cleaned


class TeamAdminForm(forms.ModelForm):
    """The admin's team form: the same address rules as the create page."""

    class Meta:
        model = Team
        fields = ["name", "slug"]

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if reserved := reserved_team_slug_error(slug):
            raise forms.ValidationError(reserved)
        return slug


class MemberAddForm(forms.Form):
    person = forms.CharField(
        max_length=254,
        label="Username or email",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_person(self):
        value = self.cleaned_data["person"].strip()
        matches = list(User.objects.filter(Q(username__iexact=value) | Q(email__iexact=value))[:2])
        if not matches:
            raise forms.ValidationError(f"No one is registered as “{value}”.")
        if len(matches) > 1:
            raise forms.ValidationError("More than one person matches; use the username.")
        user = matches[0]
        if self.team.memberships.filter(user=user).exists():
            raise forms.ValidationError(f"{user.get_username()} is already in {self.team.name}.")
        return user


class RoleChangeForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class InvitationForm(forms.Form):
    """A manager's invitation of an email address to their team."""

    email = forms.EmailField(
        max_length=254,
        label="Email address",
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)

    def __init__(self, *args, team: Team, **kwargs):
        kwargs.setdefault("prefix", "invite")  # beside the add form on one page: own field ids
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        member = (
            self.team.memberships.filter(user__email__iexact=email).select_related("user").first()
        )
        if member is not None:
            raise forms.ValidationError(
                f"{member.user.get_username()} ({email}) is already in {self.team.name}."
            )
        return email


class InvitationSignUpForm(UserCreationForm):
    """The account an invited person makes: a name, a username and a password (Django's
    password validators, which also compare it with the name and the invited address). The
    email address is the invited one and cannot be changed."""

    name = forms.CharField(
        max_length=150,
        required=False,
        label="Your name",
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("name", "username")

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.email = email
        self.fields["username"].widget.attrs["autocomplete"] = "username"

    def clean_name(self):
        # On the instance before the password validators (run after the fields are cleaned)
        # compare the password with it.
        name = self.cleaned_data["name"].strip()
        first_name, _, last_name = name.partition(" ")
        self.instance.first_name, self.instance.last_name = first_name, last_name.strip()
        return name
