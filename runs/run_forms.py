"""Forms of the run detail page. They check shape only; the services check the rules
(lengths, control characters) and their messages reach the page as they are."""

from django import forms

from runs import limits


class DisplayNameForm(forms.Form):
    display_name = forms.CharField(
        max_length=limits.DISPLAY_NAME_MAX_LENGTH, required=False, strip=True
    )


class DescriptionForm(forms.Form):
    description = forms.CharField(
        max_length=limits.DESCRIPTION_MAX_LENGTH, required=False, strip=False
    )


class TagForm(forms.Form):
    """`set` adds or changes a tag (an empty value makes a bare tag); `remove` deletes it."""

    action = forms.ChoiceField(choices=[("set", "set"), ("remove", "remove")])
    key = forms.CharField(max_length=limits.NAME_MAX_LENGTH, strip=True)
    value = forms.CharField(max_length=limits.TAG_VALUE_MAX_LENGTH, required=False, strip=False)

    def changes(self) -> dict:
        data = self.cleaned_data
        if data["action"] == "remove":
            return {"remove": [data["key"]]}
        return {"set_tags": {data["key"]: data["value"] or None}}


def first_error(form: forms.Form) -> str:
    field, errors = next(iter(form.errors.items()))
    return f"{field}: {errors[0]}" if field != "__all__" else errors[0]
