from django import forms

from portal.notifications.models import EndpointFormat, EventType


class EndpointForm(forms.Form):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="Where deliveries are POSTed: https:// and a public address.",
    )
    format = forms.ChoiceField(
        choices=EndpointFormat.choices,
        initial=EndpointFormat.STANDARD,
        widget=forms.RadioSelect,
    )
    events = forms.MultipleChoiceField(
        label="Events",
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[EventType.RUN_AWAITING_HUMAN, EventType.RUN_FAILED],
    )
    description = forms.CharField(max_length=200, required=False)


class EmailPreferencesForm(forms.Form):
    email = forms.MultipleChoiceField(
        label="Email me about",
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
