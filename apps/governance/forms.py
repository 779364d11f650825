from django import forms

from .models import ControlPack, UseCaseControlItem


class ChecklistApplyForm(forms.Form):
    pack = forms.ModelChoiceField(
        queryset=ControlPack.objects.order_by("name"),
        empty_label="Choose a pack…",
        error_messages={"invalid_choice": "Choose one of the loaded packs."},
    )


class ControlItemStatusForm(forms.Form):
    status = forms.ChoiceField(choices=UseCaseControlItem.Status.choices)
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
