from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The pages that put the apps together: home, a team's dashboard, the account page,
    the health check, and the demo data. The top layer: it may import every app."""

    name = "portal.site"
    label = "site"
    verbose_name = "Site"
