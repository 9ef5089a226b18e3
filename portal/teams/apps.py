from django.apps import AppConfig


class TeamsConfig(AppConfig):
    """Teams, their members and roles: who may see and do what.

    The label stays "portal", the one this app had when it was the whole `portal` package:
    its tables (portal_team, …), migration history and permissions ("portal.add_team") keep
    their names, so existing databases need no renaming.
    """

    name = "portal.teams"
    label = "portal"
    verbose_name = "Teams and people"
