from rest_framework import serializers

from portal.core.rest.pages import page_serializer
from portal.teams.models import Role


class TeamSerializer(serializers.Serializer):
    """A team the caller belongs to, their role in it, and its wallet."""

    slug = serializers.SlugField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, help_text="The caller's role here.")
    available_cents = serializers.IntegerField(help_text="What the team can spend now.")
    held_cents = serializers.IntegerField(help_text="Reserved by runs that have not ended.")
    spent_cents = serializers.IntegerField(help_text="Everything ever charged.")


TeamPageSerializer = page_serializer(TeamSerializer, "TeamPage")
