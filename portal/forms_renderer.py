from django.forms.renderers import TemplatesSetting


class PortalFormRenderer(TemplatesSetting):
    """Every field renders through templates/forms/field.html: label, input, help, inline errors."""

    field_template_name = "forms/field.html"
