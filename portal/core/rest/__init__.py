"""The REST API's shared machinery: bearer tokens, the error envelope, idempotency, throttles,
list pages and the OpenAPI description. The endpoints themselves live in each app's apis.py."""
