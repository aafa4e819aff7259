"""Host → schema routing: county domains, the public host, unknown and suspended hosts."""

from platform.services import county_set_status


def test_each_county_answers_on_its_own_domain(lankao, jinzhai, client):
    lankao_page = client.get("/", HTTP_HOST="lankao.localhost").content.decode()
    jinzhai_page = client.get("/", HTTP_HOST="jinzhai.localhost:8000").content.decode()
    assert "<title>兰考县</title>" in lankao_page
    assert "<title>金寨县</title>" in jinzhai_page
    assert client.get("/healthz", HTTP_HOST="lankao.localhost").json() == {"status": "ok", "schema": "county_410225"}


def test_public_host_serves_the_platform(lankao, client):
    assert client.get("/healthz", HTTP_HOST="localhost").json() == {"status": "ok", "schema": "public"}
    home = client.get("/", HTTP_HOST="localhost:8000").content.decode()
    assert '<a href="http://lankao.localhost:8000/">兰考县</a>' in home


def test_unknown_host_is_a_404_page(db, client):
    response = client.get("/", HTTP_HOST="nowhere.localhost")
    assert response.status_code == 404
    assert "没有县使用域名 nowhere.localhost。" in response.content.decode()


def test_suspended_county_gets_a_clear_403_at_once_and_comes_back(lankao, client):
    assert client.get("/", HTTP_HOST="lankao.localhost").status_code == 200  # warms the host cache
    county_set_status(county=lankao, status="suspended")
    response = client.get("/portal/farmers/", HTTP_HOST="lankao.localhost")
    assert response.status_code == 403
    assert "兰考县 的服务目前已暂停" in response.content.decode()
    county_set_status(county=lankao, status="live")
    assert client.get("/", HTTP_HOST="lankao.localhost").status_code == 200


def test_english_is_one_switch_away(lankao, client):
    client.post("/i18n/setlang/", {"language": "en", "next": "/"}, HTTP_HOST="lankao.localhost")
    page = client.get("/", HTTP_HOST="lankao.localhost").content.decode()
    assert "Registered farmers" in page
