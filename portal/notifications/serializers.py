"""The notifications API's shapes: input serializers validate, output serializers describe; no
writes here."""

from rest_framework import serializers

from portal.core.rest.pages import LimitField, page_serializer
from portal.notifications.models import (
    DeliveryStatus,
    EndpointFormat,
    EventType,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)


class EndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), allow_empty=False, max_length=20
    )
    format = serializers.ChoiceField(
        choices=EndpointFormat.choices, default=EndpointFormat.STANDARD
    )
    description = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True
    )


class EndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "format", "description", "enabled"]


class EndpointCreatedSerializer(EndpointSerializer):
    secret = serializers.CharField(
        help_text="`whsec_` + base64: the signing key, shown only in this answer."
    )

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]


class DeliverySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_type",
            "webhook_id",
            "attempts",
            "status",
            "last_status_code",
            "created_at",
            "delivered_at",
        ]


class NotificationSerializer(serializers.ModelSerializer):
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "type", "text", "url", "created_at", "read"]

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class CursorQuerySerializer(serializers.Serializer):
    cursor = serializers.IntegerField(min_value=1, required=False, help_text="From `next`.")
    limit = LimitField()


EndpointPageSerializer = page_serializer(EndpointSerializer, "EndpointPageSerializer")
DeliveryPageSerializer = page_serializer(DeliverySerializer, "DeliveryPageSerializer")
NotificationPageSerializer = page_serializer(NotificationSerializer, "NotificationPageSerializer")
