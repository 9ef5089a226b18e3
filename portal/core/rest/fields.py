"""Input fields as strict as JSON Schema: the API takes what its OpenAPI description says and
refuses the rest with a 400, rather than guessing ("5" is not 5, true is not 1, a name the
endpoint does not know is a mistake, like on Coasty itself)."""

from collections.abc import Mapping

from rest_framework import serializers


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Give a whole number (a JSON integer)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {
        "invalid": "Give a string.",
        "unencodable": "Give text that can be written as UTF-8.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode(
                "utf-8"
            )  # a lone surrogate ("\ud800") parses as JSON, but no database stores it
        except UnicodeEncodeError:
            self.fail("unencodable")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictInputSerializer(serializers.Serializer):
    """A request body: a JSON object whose every key is one of the declared fields."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data if name not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field: this endpoint does not take it."] for name in unknown}
                )
        return super().to_internal_value(data)
