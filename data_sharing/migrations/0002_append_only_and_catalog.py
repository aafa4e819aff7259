from django.db import migrations
from django.utils import timezone

APPEND_ONLY_TABLES = ["data_sharing_consentevent", "data_sharing_accesslog"]

CREATE_SQL = """
CREATE OR REPLACE FUNCTION puhui_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION puhui_refuse_change();
"""
    for table in APPEND_ONLY_TABLES
)
DROP_SQL = "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};" for table in APPEND_ONLY_TABLES)

CONSENT_TEXT_V1_ZH = (
    "本人同意{county}将下列政务数据共享给贷款机构，仅用于评估和发放本人的信用贷款（预授信、借款、贷后管理）。"
    "授权期限不超过12个月，每日更新；我可以随时暂停或撤回授权，撤回后立即停止使用我的数据，"
    "据此产生的评估数据在授权结束后按约定期限删除。我可以查看每一次对我数据的访问。"
)
CONSENT_TEXT_V1_EN = (
    "I agree that {county} shares the government data listed below with the lending partner, only to assess and "
    "grant my credit (pre-approved line, loans and loan servicing). The consent lasts at most 12 months and is "
    "refreshed daily; I can pause or revoke it at any time, and revoking stops all use of my data at once. Data "
    "derived from it is deleted within the agreed period after the consent ends. I can see every access to my data."
)


def seed(apps, schema_editor):
    from data_sharing.catalog import CATEGORIES, CREDIT_PURPOSE

    DataCategory = apps.get_model("data_sharing", "DataCategory")
    ConsentText = apps.get_model("data_sharing", "ConsentText")
    for entry in CATEGORIES:
        DataCategory.objects.update_or_create(code=entry["code"], defaults={k: v for k, v in entry.items() if k != "code"})
    ConsentText.objects.get_or_create(
        purpose_code=CREDIT_PURPOSE, version=1,
        defaults={"text_zh": CONSENT_TEXT_V1_ZH, "text_en": CONSENT_TEXT_V1_EN, "published_at": timezone.now()},
    )


class Migration(migrations.Migration):
    dependencies = [("data_sharing", "0001_initial")]

    operations = [
        migrations.RunSQL(CREATE_SQL, DROP_SQL),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
