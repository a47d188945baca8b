"""Log in with Discord (against the fake), sessions, CSRF and per-request admin checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from gradio_client import Client
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from fluxbot.web.sessions import LOGIN_COOKIE, SESSION_COOKIE, SessionCodec, load_or_create_key
from tests.fake_discord.models import FakeUser
from tests.web.conftest import Studios


def log_in(studios: Studios, user: FakeUser) -> httpx.Client:
    """A browser-like client that went through /auth/discord, Discord's consent, the callback."""
    browser = httpx.Client(base_url=studios.oauth_url, follow_redirects=False)
    start = browser.get("/auth/discord")
    assert start.status_code == 303
    authorize = urlsplit(start.headers["location"])
    query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert authorize.path.endswith("/oauth2/authorize") and query["scope"] == "identify"
    assert query["client_id"] == str(studios.discord.oauth.client_id)
    code = studios.discord.oauth.authorize(user, redirect_uri=query["redirect_uri"])
    done = browser.get("/auth/callback", params={"code": code, "state": query["state"]})
    assert done.status_code == 303 and done.headers["location"] == "/"
    cookie = next(h for h in done.headers.get_list("set-cookie") if SESSION_COOKIE in h)
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Max-Age=" in cookie
    return browser


def studio_client(studios: Studios, browser: httpx.Client) -> Client:
    cookie = f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"
    return Client(studios.oauth_url + "/", headers={"Cookie": cookie}, verbose=False)


@pytest.fixture(scope="module")
def alice(studios: Studios) -> Iterator[httpx.Client]:
    browser = log_in(studios, studios.discord.alice)
    yield browser
    browser.close()


def test_without_a_session_the_studio_sends_you_to_log_in(studios: Studios) -> None:
    page = httpx.get(studios.oauth_url + "/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    login = httpx.get(studios.oauth_url + "/login")
    assert "Log in with Discord" in login.text
    assert httpx.get(studios.oauth_url + "/config").status_code == 401
    assert httpx.get(studios.oauth_url + "/export.zip").status_code == 401


def test_a_member_creates_as_their_discord_id_and_is_refused_admin(
    studios: Studios, alice: httpx.Client
) -> None:
    assert alice.get("/").status_code == 200
    client = studio_client(studios, alice)
    try:
        status, _, gallery, _, job_id = client.predict(
            "a lighthouse at dusk", "", "your default", "3", "1", "1", False, api_name="/create"
        )
        assert status == f"Done: `{job_id}`" and len(gallery) == 1
        row = studios.call(studios.store.jobs.by_public_id(job_id))
        assert row.user_id == studios.discord.alice.id
        # The permission model (fluxbot/app/permissions.py): the whole bot is its owners'.
        for endpoint in ("/admin_status", "/pause", "/resume"):
            with pytest.raises(Exception, match="Only the bot's owners can do that"):
                client.predict(api_name=endpoint)
        for endpoint in ("/ban", "/unban"):
            with pytest.raises(Exception, match="Only the bot's owners can do that"):
                client.predict(str(studios.discord.bob.id), api_name=endpoint)
        with pytest.raises(Exception, match="Only the bot's owners can do that"):
            client.predict(job_id, api_name="/admin_cancel")
        assert not studios.engine.scheduler.paused
        assert not studios.call(studios.store.bans.is_banned(studios.discord.bob.id, None))
    finally:
        client.close()


def test_the_application_owner_is_a_bot_owner_here_too(studios: Studios) -> None:
    """Bot owners are FLUXBOT_ADMIN_IDS and the application's owner (Discord's application
    info), as in the bot's permission model."""
    browser = log_in(studios, studios.discord.owner)
    client = studio_client(studios, browser)
    try:
        cards, _queue = client.predict(api_name="/admin_status")
        assert "cpu" in cards
    finally:
        client.close()
        browser.close()


def test_an_admin_id_gets_the_admin_page(studios: Studios) -> None:
    browser = log_in(studios, studios.discord.admin)
    client = studio_client(studios, browser)
    try:
        cards, _queue = client.predict(api_name="/admin_status")
        assert "cpu" in cards
        bob = studios.discord.bob.id
        assert client.predict(str(bob), api_name="/ban") == f"Banned user {bob} everywhere."
        assert studios.call(studios.store.bans.is_banned(bob, None))
        assert client.predict(str(bob), api_name="/unban") == f"Unbanned user {bob} everywhere."
        assert not studios.call(studios.store.bans.is_banned(bob, None))
    finally:
        client.close()
        browser.close()


def test_a_wrong_or_missing_state_is_refused(studios: Studios) -> None:
    browser = httpx.Client(base_url=studios.oauth_url, follow_redirects=False)
    start = browser.get("/auth/discord")
    query = parse_qs(urlsplit(start.headers["location"]).query)
    code = studios.discord.oauth.authorize(
        studios.discord.alice, redirect_uri=query["redirect_uri"][0]
    )
    forged = browser.get("/auth/callback", params={"code": code, "state": "attacker-state"})
    assert forged.status_code == 400 and SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    browser.cookies.delete(LOGIN_COOKIE)
    no_cookie = browser.get("/auth/callback", params={"code": code, "state": query["state"][0]})
    assert no_cookie.status_code == 400
    assert SESSION_COOKIE not in browser.cookies
    browser.close()


def test_an_expired_or_forged_session_is_refused(studios: Studios, alice: httpx.Client) -> None:
    key = load_or_create_key(studios.data_dir)
    max_age = studios.oauth.settings.web_session_hours * 3600

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - max_age - 60)

    old = URLSafeTimedSerializer(key, salt="fluxbot-session", signer=LongAgo).dumps(
        {"u": str(studios.discord.alice.id), "n": "alice", "s": "x"}
    )
    fresh = SessionCodec(key, max_age).issue(studios.discord.alice.id, "alice")
    assert SessionCodec(key, max_age).read(fresh) is not None
    for cookie in (old, fresh[:-2] + "xx"):
        jar = {SESSION_COOKIE: cookie}
        assert httpx.get(studios.oauth_url + "/", cookies=jar).status_code == 303
        assert httpx.get(studios.oauth_url + "/config", cookies=jar).status_code == 401


def test_logout_needs_the_csrf_token_and_cross_site_posts_are_refused(
    studios: Studios,
) -> None:
    browser = log_in(studios, studios.discord.bob)
    own = {"Origin": studios.oauth_url}
    assert browser.post("/logout", data={}, headers=own).status_code == 403
    evil = {"Origin": "http://evil.example"}
    assert browser.post("/logout", data={}, headers=evil).status_code == 403
    join = browser.post("/gradio_api/queue/join", json={}, headers=evil)
    assert join.status_code == 403
    assert browser.get("/").status_code == 200  # still logged in

    codec = SessionCodec(load_or_create_key(studios.data_dir), 3600)
    session = codec.read(browser.cookies[SESSION_COOKIE])
    assert session is not None
    out = browser.post("/logout", data={"csrf": codec.csrf_token(session)}, headers=own)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert SESSION_COOKIE not in browser.cookies
    assert browser.get("/").status_code == 303
    browser.close()


def test_a_member_deletes_a_job_then_forgets_herself(studios: Studios, alice: httpx.Client) -> None:
    client = studio_client(studios, alice)
    alice_id = studios.discord.alice.id
    try:
        *_, job_id = client.predict(
            "a short-lived kite --steps 1",
            "",
            "your default",
            None,
            None,
            1,
            False,
            api_name="/create",
        )
        row = studios.call(studios.store.jobs.by_public_id(job_id))
        path = studios.store.image_path(row.images[0].path)
        assert path.exists()
        note, *_ = client.predict(job_id, api_name="/delete")
        assert note == f"Deleted job `{job_id}` and its images."
        assert studios.call(studios.store.jobs.by_public_id(job_id)) is None
        assert not path.exists()
        with pytest.raises(Exception, match="Tick the box first"):
            client.predict(False, api_name="/forget_me")
        assert client.predict(True, api_name="/forget_me").startswith("Deleted your data:")
        assert studios.call(studios.store.jobs.for_user(alice_id)).total == 0
        assert studios.call(studios.store.users.get(alice_id)) is None
    finally:
        client.close()
