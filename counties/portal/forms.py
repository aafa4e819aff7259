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


# --- Credit policy ---------------------------------------------------------------------------------


def _decimal_input() -> forms.TextInput:
    return forms.TextInput(attrs={"inputmode": "decimal", "size": 10})


class PolicyParamsForm(forms.Form):
    """A draft's parameters besides the grade table. Numbers travel as text: the policy service
    (loans.policy) parses and checks them, with its own messages for every bound."""

    min_line = forms.CharField(label=_("最低额度（元）"), max_length=20, widget=_decimal_input())
    max_line = forms.CharField(label=_("最高额度（元）"), max_length=20, widget=_decimal_input())
    rounding_unit = forms.CharField(label=_("取整单位（元）"), max_length=20, widget=_decimal_input())
    base_income = forms.CharField(label=_("基础收入（元/年）"), max_length=20, widget=_decimal_input())
    income_per_mu = forms.CharField(label=_("每亩收入（元/年）"), max_length=20, widget=_decimal_input())
    min_age = forms.IntegerField(label=_("最低年龄"), min_value=0, max_value=150)
    max_age = forms.IntegerField(label=_("最高年龄"), min_value=0, max_value=150)
    validity_months = forms.IntegerField(label=_("额度有效期（月）"), min_value=0, max_value=1200)

    DECIMALS = ("min_line", "max_line", "rounding_unit", "base_income", "income_per_mu")

    @classmethod
    def initial_of(cls, policy) -> dict:
        return {name: (str(getattr(policy, name)) if name in cls.DECIMALS else getattr(policy, name)) for name in cls.base_fields}

    def params(self) -> dict:
        return {name: (value.strip() if isinstance(value, str) else value) for name, value in self.cleaned_data.items()}


class GradeForm(forms.Form):
    """One row of the grade table; a row left empty is not a grade."""

    grade = forms.CharField(label=_("等级"), max_length=4, required=False, widget=forms.TextInput(attrs={"size": 3}))
    max_pd = forms.CharField(label=_("违约概率上限"), max_length=12, required=False, widget=_decimal_input())
    multiplier = forms.CharField(label=_("额度倍数"), max_length=12, required=False, widget=_decimal_input())
    cap = forms.CharField(label=_("等级上限（元）"), max_length=20, required=False, widget=_decimal_input())
    annual_rate = forms.CharField(label=_("年利率"), max_length=12, required=False, widget=_decimal_input())

    KEYS = ("grade", "max_pd", "multiplier", "cap", "annual_rate")


GradeFormSet = forms.formset_factory(GradeForm, extra=1, max_num=12, validate_max=True)


def grade_rows(formset) -> list[dict[str, str]]:
    """The filled rows of a valid grade formset, in order, as the policy service takes them."""
    rows = []
    for form in formset.forms:
        values = {key: (form.cleaned_data.get(key) or "").strip() for key in GradeForm.KEYS}
        if any(values.values()):
            rows.append(values)
    return rows


def grade_initial(policy) -> list[dict[str, str]]:
    return [{key: str(row[key]) for key in GradeForm.KEYS} for row in policy.grades]


class PolicyRejectForm(forms.Form):
    reason = forms.CharField(label=_("退回原因"), max_length=200, required=False)


class DraftNewForm(forms.Form):
    """A new draft starts as a copy of the policy in force (or of the shipped default grades
    when there is none) for the chosen lending partner."""

    partner = forms.ModelChoiceField(label=_("贷款机构"), queryset=None, empty_label=None)

    def __init__(self, *args, **kwargs) -> None:
        from platform.models import LendingPartner

        super().__init__(*args, **kwargs)
        self.fields["partner"].queryset = LendingPartner.objects.filter(is_active=True).order_by("code")


# --- County programmes -----------------------------------------------------------------------------


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"})


def _feature_choices() -> list[tuple[str, str]]:
    from django.utils.translation import get_language

    from loans.scorecard import FEATURES

    english = (get_language() or "").startswith("en")
    return [("", _("所有农户"))] + [(feature.name, feature.label_en if english else feature.label_zh) for feature in FEATURES]


class SubsidyProgrammeForm(forms.Form):
    name = forms.CharField(label=_("项目名称"), max_length=100)
    share = forms.CharField(label=_("贴息比例（0–1）"), max_length=10, widget=_decimal_input(), help_text=_("县财政承担利息的比例，例如 0.5 为一半。"))
    starts_on = forms.DateField(label=_("开始日期"), widget=_date_input())
    ends_on = forms.DateField(label=_("结束日期"), widget=_date_input())
    feature = forms.ChoiceField(label=_("适用条件"), required=False, choices=())
    value = forms.CharField(label=_("条件取值"), max_length=20, required=False, help_text=_("例如防返贫监测户取 1。"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["feature"].choices = _feature_choices()

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("feature") and not (cleaned.get("value") or "").strip():
            self.add_error("value", _("请填写条件取值。"))
        return cleaned

    def eligibility(self) -> dict:
        feature, value = self.cleaned_data.get("feature"), (self.cleaned_data.get("value") or "").strip()
        if not feature:
            return {}
        # Whole numbers as numbers (flags such as poverty_monitored = 1); others as decimal text.
        return {feature: int(value) if value.lstrip("-").isdigit() else value}


class AmountOnForm(forms.Form):
    """An amount in yuan on a business date: the fund's deposits, the county's subsidy payments."""

    amount = forms.CharField(label=_("金额（元）"), max_length=20, widget=_decimal_input())
    on = forms.DateField(label=_("业务日期"), widget=_date_input())


class DisasterPauseForm(forms.Form):
    townships = forms.ModelMultipleChoiceField(
        label=_("乡镇"), queryset=Township.objects.order_by("code"), widget=forms.CheckboxSelectMultiple
    )
    starts_on = forms.DateField(label=_("开始日期"), widget=_date_input())
    ends_on = forms.DateField(label=_("结束日期"), widget=_date_input())
    reason = forms.CharField(label=_("原因"), max_length=200, widget=forms.TextInput(attrs={"placeholder": _("例如：7 月暴雨洪涝")}))


class DateOnForm(forms.Form):
    on = forms.DateField(label=_("日期"), widget=_date_input())
