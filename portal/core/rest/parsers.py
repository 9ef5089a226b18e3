"""The API's one parser: DRF's JSONParser, with a body nested too deep to parse refused as
malformed JSON (400 VALIDATION_ERROR in the envelope) instead of a 500.

json.load raises RecursionError, not ValueError, when the nesting outruns the interpreter's
recursion limit (a few kilobytes of `[[[[…` are enough); DRF only turns ValueError (which covers
bad syntax, undecodable bytes and oversized numbers) into ParseError.
"""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JsonParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
