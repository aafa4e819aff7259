"""Forms of the farmer portal. Error messages are short, plain and in the page's language."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from data_sharing.pii import validate_id_number, validate_phone
from loans.schedule import PrepaymentMode


class PhoneForm(forms.Form):
    phone = forms.CharField(
        label=_("手机号"),
        max_length=20,
        widget=forms.TextInput(
            attrs={"type": "tel", "inputmode": "numeric", "autocomplete": "tel", "placeholder": "13812345678"}
        ),
    )

    def clean_phone(self) -> str:
        try:
            return validate_phone(self.cleaned_data["phone"])
        except ValidationError:
            raise forms.ValidationError(_("请输入 11 位手机号，例如 13812345678。")) from None


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("验证码"),
        max_length=6,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "maxlength": "6", "placeholder": "______"}
        ),
    )

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()
        if not re.fullmatch(r"\d{6}", code):
            raise forms.ValidationError(_("验证码是 6 位数字。"))
        return code


class IdentifyForm(forms.Form):
    name = forms.CharField(label=_("姓名"), max_length=32, widget=forms.TextInput(attrs={"autocomplete": "name"}))
    id_number = forms.CharField(
        label=_("身份证号"), max_length=18, widget=forms.TextInput(attrs={"autocomplete": "off", "maxlength": "18"})
    )

    def clean_id_number(self) -> str:
        try:
            return validate_id_number(self.cleaned_data["id_number"])
        except ValidationError:
            raise forms.ValidationError(_("身份证号不对，请核对 18 位号码（最后一位可能是 X）。")) from None


class GrantForm(forms.Form):
    """The consent screen: the agreed categories preselected, and sensitive personal
    information as a separate choice (PIPL 单独同意), not preselected."""

    categories = forms.MultipleChoiceField(required=False)
    sensitive_categories = forms.MultipleChoiceField(required=False)

    def __init__(self, *args, general: list[str], sensitive: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["categories"].choices = [(code, code) for code in general]
        self.fields["sensitive_categories"].choices = [(code, code) for code in sensitive]

    def clean(self) -> dict:
        data = super().clean()
        chosen = [*data.get("categories", []), *data.get("sensitive_categories", [])]
        if not chosen and not self.errors:
            raise forms.ValidationError(_("请至少选择一类数据。"))
        data["chosen"] = chosen
        return data


# --- Borrowing and repaying --------------------------------------------------------------------


def _money(text: str, message) -> Decimal:
    """A yuan amount as typed on a phone: "12000", "12,000" or "12，000.50"."""
    cleaned = (text or "").replace(",", "").replace("，", "").replace(" ", "").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise forms.ValidationError(message) from None
    if not value.is_finite():
        raise forms.ValidationError(message)
    return value


class BorrowForm(forms.Form):
    """Screen 1 of borrowing. The limits (at least 1,000 yuan, at most what is available, the
    county's terms and methods) are the loan service's to check, not the form's: its refusals
    are shown on this form."""

    amount = forms.CharField(
        label=_("借多少（元）"),
        max_length=16,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "class": "amount"}),
    )
    term_months = forms.TypedChoiceField(label=_("借多久"), coerce=int)
    method = forms.ChoiceField(label=_("怎么还"))

    def __init__(self, *args, terms: list[int], methods: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["term_months"].choices = [(months, str(months)) for months in terms]
        self.fields["method"].choices = [(method, method) for method in methods]

    def clean_amount(self) -> Decimal:
        return _money(self.cleaned_data["amount"], _("请输入借款金额，例如 10000。"))


# LoanRefused codes of loans.services shown on a field of BorrowForm (any other: on the form).
BORROW_REFUSAL_FIELDS = {
    "invalid_amount": "amount",
    "amount_too_small": "amount",
    "amount_exceeds_available": "amount",
    "invalid_term": "term_months",
    "invalid_method": "method",
}


class ConfirmForm(CodeForm):
    """Screen 2: the SMS code, and the idempotency key the page was rendered with (a double tap
    sends the same key twice; the loan is made once)."""

    key = forms.UUIDField(widget=forms.HiddenInput)


class RepayForm(forms.Form):
    """Repay now / pay off: the exact amount the page showed, and the page's idempotency key."""

    amount = forms.CharField(widget=forms.HiddenInput)
    key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount(self) -> Decimal:
        return _money(self.cleaned_data["amount"], _("请输入正确的还款金额。"))


class PrepayForm(forms.Form):
    principal = forms.CharField(
        label=_("提前还多少本金（元）"),
        max_length=16,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    mode = forms.ChoiceField(
        label=_("还了以后"), choices=[(mode.value, mode.value) for mode in PrepaymentMode], widget=forms.RadioSelect
    )
    key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_principal(self) -> Decimal:
        return _money(self.cleaned_data["principal"], _("请输入正确的还款金额。"))
