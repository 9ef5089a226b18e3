"""Lists in the API are `{"results": [...], "next": <absolute URL or null>}`, paged by cursor.

Each list's view asks its app's keyset selector for one page and links the next one here; the
cursor is opaque to clients, who only follow `next`.
"""

from django.http import QueryDict
from rest_framework import serializers

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


def next_link(request, **params) -> str:
    """The absolute URL of this list with `params` replaced (filters kept)."""
    query: QueryDict = request.query_params.copy()
    for name, value in params.items():
        query[name] = str(value)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def page_serializer(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """A serializer class describing one page of `item`s (for the schema and the output)."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "results": item(many=True),
            "next": serializers.URLField(
                allow_null=True, help_text="The next page, or null on the last one."
            ),
            "__doc__": f"One page of {item.__name__.removesuffix('Serializer')} items.",
        },
    )


class LimitField(serializers.IntegerField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_LIMIT)
        kwargs.setdefault("default", DEFAULT_LIMIT)
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", f"Items per page, 1 to {MAX_LIMIT}.")
        super().__init__(**kwargs)
