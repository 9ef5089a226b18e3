from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils.text import slugify

from portal.models import ROLE_DESCRIPTIONS, Role, Team

User = get_user_model()

ROLE_CHOICES = [(role.value, f"{role.label} — {ROLE_DESCRIPTIONS[role]}") for role in Role]


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(
        max_length=50,
        required=False,
        label="Address",
        help_text="Used in the team's URLs, e.g. /teams/research/. Left empty, it follows the name.",
    )

    def clean(self):
        cleaned = super().clean()
        slug = cleaned.get("slug") or slugify(cleaned.get("name") or "")
        if not slug:
            self.add_error("slug", "Give the team an address of letters, digits or dashes.")
        elif Team.objects.filter(slug=slug).exists():
            self.add_error("slug", f"A team with the address “{slug}” already exists.")
        cleaned["slug"] = slug
        return cleaned


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


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Token name",
        help_text="What will use it, e.g. “nightly export script”. Only you see it.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
