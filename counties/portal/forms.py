"""Forms of the officials' portal."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from counties.models import FarmerLookup, Official, Township


class TokenForm(forms.Form):
    token = forms.CharField(
        label=_("验证码"),
        min_length=6,
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
        help_text=_("身份验证器应用中显示的 6 位数字。"),
    )

    def clean_token(self) -> str:
        token = self.cleaned_data["token"].replace(" ", "")
        if not token.isdigit():
            raise forms.ValidationError(_("验证码是数字。"))
        return token


class OfficialCreateForm(forms.Form):
    username = forms.CharField(label=_("用户名"), max_length=150)
    role = forms.ChoiceField(label=_("角色"), choices=Official.Role.choices)
    township = forms.ModelChoiceField(
        label=_("所属乡镇"), queryset=Township.objects.order_by("code"), required=False,
        help_text=_("仅乡镇专员需要：只能看到本乡镇的数据。"),
    )
    password = forms.CharField(
        label=_("初始密码"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("至少 10 位，不要太常见；请当面或电话告知本人。"),
    )


class PurposeForm(forms.Form):
    purpose = forms.ChoiceField(label=_("查询目的"), choices=FarmerLookup.Purpose.choices, widget=forms.RadioSelect)
    note = forms.CharField(
        label=_("说明"), max_length=200, required=False,
        widget=forms.TextInput(attrs={"placeholder": _("例如：农户来电咨询额度")}),
    )


class FarmerSearchForm(forms.Form):
    q = forms.CharField(label=_("姓名、身份证号或手机号"), max_length=64, required=False)
    village = forms.CharField(label=_("村"), max_length=64, required=False)


class DateRangeForm(forms.Form):
    date_from = forms.DateField(label=_("开始日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("结束日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("date_from") and cleaned.get("date_to") and cleaned["date_from"] > cleaned["date_to"]:
            raise forms.ValidationError(_("开始日期不能晚于结束日期。"))
        return cleaned
