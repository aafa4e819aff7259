"""SQL-injection and XSS probes in every search, filter, free-text and upload field of the
portals: each is answered normally (no 500), an SQL probe matches nothing it should not, and no
page ever contains a probe's markup raw — only escaped. CSV exports defuse what a spreadsheet
would run.

Fields: the official's farmer search (name/ID/phone and village), the access-log filters and
its CSV export, the purpose note of a farmer look-up (stored, then shown in the access log), the
official and farmer login forms, the upload form (category, file name) and the cells of an
uploaded file — both as an error report (page and CSV) and, imported, on the official's farmer
page and the farmer's own "my data" page.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from counties.models import FarmerLookup, Official
from data_sharing import imports
from data_sharing.models import GovernmentRecord, ImportBatch
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import make_official, otp_login
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import CONSENTABLE, credit_partner
from tests.loans.test_nightly_batch import activate_policy

HOST = "lankao.localhost"
SQL = "' OR 1=1 --"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PROBES = [SQL, SCRIPT, IMG]
RAW = ("<script>alert(1)", "<img src=x onerror", '"><img')


def assert_escaped(response) -> str:
    assert response.status_code < 500
    html = response.content.decode()
    leaked = [raw for raw in RAW if raw in html]
    assert not leaked, f"raw markup on {response.wsgi_request.path}: {leaked}"
    return html


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


@pytest.fixture
def county(lankao):
    with in_county(lankao):
        yield lankao


@pytest.fixture
def admin(county):
    client = Client(HTTP_HOST=HOST)
    user, _official, device = make_official(Official.Role.COUNTY_ADMIN, username="probe-admin")
    otp_login(client, user, device)
    return client


@pytest.fixture
def farmers(county):
    return [
        make_farmer(name="O'Neil张", id_number=valid_id_number(seq=961)),
        make_farmer(name="李四", id_number=valid_id_number(seq=962)),
        make_farmer(name="王五", id_number=valid_id_number(seq=963)),
    ]


@pytest.mark.parametrize("probe", PROBES)
def test_the_farmer_search_treats_a_probe_as_text(admin, farmers, probe):
    by_name = admin.get("/portal/farmers/", {"q": probe})
    by_village = admin.get("/portal/farmers/", {"village": probe})
    both = admin.get("/portal/farmers/", {"q": probe, "village": probe})

    for response in (by_name, by_village, both):
        html = assert_escaped(response)
        assert response.context["rows"] == []  # "' OR 1=1 --" matches nobody, as any other text would
    assert "&lt;" in html or "&#x27;" in html or "&#39;" in html  # echoed back in the box, escaped
    # A quote is data: the farmer whose name has one is found by it, and only that farmer.
    quoted = admin.get("/portal/farmers/", {"q": "O'Neil"})
    assert [row["farmer"].pk for row in quoted.context["rows"]] == [farmers[0].pk]


@pytest.mark.parametrize("probe", PROBES)
def test_the_access_log_filters_and_export_answer_a_probe_as_a_bad_date(admin, probe):
    page = admin.get("/portal/access/", {"date_from": probe, "date_to": probe, "page": probe})
    export = admin.get("/portal/access/export.csv", {"date_from": probe, "date_to": probe})

    html = assert_escaped(page)
    assert page.status_code == 200 and "日期" in html
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")


def test_a_lookup_note_is_stored_as_text_and_escaped_in_the_log_and_its_export(admin, farmers):
    activate_policy(credit_partner())  # the look-up reads through the gate for the policy's partner, logged
    notes = [SCRIPT, IMG, "=HYPERLINK(\"http://x\",\"y\")"]
    for note in notes:
        response = admin.post(f"/portal/farmers/{farmers[1].pk}/", {"purpose": "farmer_request", "note": note})
        assert_escaped(response)
    assert sorted(FarmerLookup.objects.values_list("note", flat=True)) == sorted(notes)

    log = assert_escaped(admin.get("/portal/access/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in log
    export = b"".join(admin.get("/portal/access/export.csv").streaming_content).decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(export)) for cell in row]
    assert SCRIPT in cells  # a CSV cell is text, not markup
    assert "'=HYPERLINK(\"http://x\",\"y\")" in cells and not [cell for cell in cells if cell.startswith("=")]


@pytest.mark.parametrize("probe", PROBES)
def test_login_forms_echo_a_probe_escaped(county, probe):
    official = Client(HTTP_HOST=HOST).post("/portal/login/", {"username": probe, "password": probe})
    farmer = Client(HTTP_HOST=HOST).post("/m/login/", {"phone": probe})

    assert official.status_code == farmer.status_code == 200
    assert_escaped(official)
    assert_escaped(farmer)


def test_the_upload_form_and_a_probe_file_name(admin, county):
    form = assert_escaped(admin.get("/portal/data/upload/", {"category": SCRIPT}))
    assert form.count("<script") == form.count("<script src=")  # only the page's own scripts

    name = f"{IMG}.csv"  # (Django keeps what follows the last "/" of a file name)
    uploaded = admin.post(
        "/portal/data/upload/",
        {"category": "land_contract", "as_of_date": "2026-06-30", "file": SimpleUploadedFile(name, b"x")},
    )
    batch = ImportBatch.objects.get()
    assert batch.file_name == name
    page = assert_escaped(admin.get(uploaded["Location"]))
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in page
    assert_escaped(admin.get("/portal/data/categories/land_contract/"))
    assert_escaped(admin.get("/portal/data/"))


LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"


def test_probes_in_an_uploaded_file_are_reported_escaped(admin, farmers):
    id_number = valid_id_number(seq=962)
    quoted_img = '"' + IMG.replace('"', '""') + '"'  # CSV quoting: the probe as one cell
    rows = [f"{id_number},李四,{SCRIPT},{quoted_img},{SQL},\n", f"{SQL},{SCRIPT},HT-2,3,1.5,\n"]
    batch, _created = imports.batch_submit_file(
        category_code="land_contract", file_name="probes.csv", content=(LAND_HEADER + "".join(rows)).encode(),
        as_of_date=dt.date(2026, 6, 30), submitted_by="probe-admin", schedule=False,
    )
    batch = imports.batch_run(batch_id=batch.pk)

    assert batch.status == "rejected"
    reasons = [error["reason_en"] for error in batch.errors]
    assert any(IMG in reason for reason in reasons)
    assert any(SQL in reason for reason in reasons)
    page = assert_escaped(admin.get(f"/portal/data/batches/{batch.pk}/"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    report = admin.get(f"/portal/data/batches/{batch.pk}/errors.csv").content.decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(report)) for cell in row]
    assert any(IMG in cell for cell in cells)  # text in a CSV; nothing a spreadsheet would run
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]
    assert GovernmentRecord.objects.count() == 0


def test_an_imported_probe_is_shown_escaped_to_the_official_and_the_farmer(admin, farmers):
    partner = credit_partner()
    activate_policy(partner)
    farmer = farmers[1]
    grant(farmer, partner, CONSENTABLE)
    content = (LAND_HEADER + f"{valid_id_number(seq=962)},李四,{SCRIPT},3,12.5,\n").encode()
    batch, _created = imports.batch_submit_file(
        category_code="land_contract", file_name="ok.csv", content=content, as_of_date=dt.date(2026, 6, 30),
        submitted_by="probe-admin", schedule=False,
    )
    assert imports.batch_run(batch_id=batch.pk).status == "succeeded"
    assert GovernmentRecord.objects.get().data["contract_no"] == SCRIPT

    official_view = assert_escaped(admin.post(f"/portal/farmers/{farmer.pk}/", {"purpose": "farmer_request", "note": ""}))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in official_view
    own = Client(HTTP_HOST=HOST)
    session = own.session
    session["farmer_id"] = farmer.pk
    session.save()
    my_data = assert_escaped(own.get("/m/data/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in my_data
