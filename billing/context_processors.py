from django.utils.functional import SimpleLazyObject

from billing.selectors import low_balance_banner


def wallet_banner(request):
    """The low-balance banner on every page of a team the person belongs to.

    Lazy: the one query runs only when a page renders the banner, and only for team pages
    (those whose view set `request.team` after checking membership).
    """
    team = getattr(request, "team", None)
    if team is None:
        return {}
    return {"low_balance_banner": SimpleLazyObject(lambda: low_balance_banner(team))}
