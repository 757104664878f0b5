"""Near-miss token carriers never reach the service, and the link's redirect stays on the share.

The attack: next to a valid carrier, the token in a form the gate did not recognise (a cookie name
differing in case, cookies joined by ``,``, a ``;``-separated query, another header...) was
forwarded as the application's own data. Every such request is now refused with 400 or stripped:
either way no token-looking value reaches the service. And ``/x/..//evil.example`` in a link
became a ``Location`` that a browser resolves to ``//evil.example``.
"""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from gatekit import COOKIE, TOKEN, request, run

T = ("X-Safetunnel-Token", TOKEN)
QUOTED = urllib.parse.quote(TOKEN, safe="")
# Every form in which the token could be read back out of the forwarded bytes.
NEEDLES = [
    TOKEN.encode(),
    QUOTED.encode(),
    TOKEN.replace("_", "%5F").encode(),
    base64.b64encode(f"user:{TOKEN}".encode()),
]

CORPUS: dict[str, bytes] = {
    "cookie-name-case": request("/", [T, ("Cookie", f"SafeTunnel_st-1a2b3c={TOKEN}")]),
    "cookie-name-upper": request("/", [T, ("Cookie", f"a=1; {COOKIE.upper()}={TOKEN}")]),
    "cookie-comma": request("/", [T, ("Cookie", f"a=1, {COOKIE}={TOKEN}")]),
    "cookie-comma-tight": request("/", [T, ("Cookie", f"a=1,{COOKIE}={TOKEN}; b=2")]),
    "cookie-space-before-equals": request("/", [T, ("Cookie", f"a=1; {COOKIE} ={TOKEN}")]),
    "cookie-other-name": request("/", [T, ("Cookie", f"session={TOKEN}")]),
    "cookie-second-header": request("/", [T, ("Cookie", "a=1"), ("Cookie", f"x={TOKEN}")]),
    "query-semicolon": request(f"/?a=1;safetunnel_token={TOKEN}", [T]),
    "query-name-case": request(f"/?Safetunnel_Token={TOKEN}", [T]),
    "query-name-upper": request(f"/?a=1&SAFETUNNEL_TOKEN={TOKEN}", [T]),
    "query-other-name": request(f"/?token={TOKEN}", [T]),
    "query-percent-encoded-value": request(f"/?x={QUOTED.replace('_', '%5F')}", [T]),
    "query-double-encoded": request(f"/?x={TOKEN.replace('_', '%255F')}", [T]),
    "query-plus-name": request(f"/?safetunnel+token={TOKEN}", [T]),
    "path-parameter": request(f"/x;safetunnel_token={TOKEN}", [T]),
    "path-segment": request(f"/files/{TOKEN}", [T]),
    "header-underscores": request("/", [T, ("X_Safetunnel_Token", TOKEN)]),
    "header-other": request("/", [T, ("X-Api-Key", TOKEN)]),
    "header-referer": request("/", [T, ("Referer", f"http://h/?safetunnel_token={TOKEN}")]),
    "basic-auth": request("/", [T, ("Authorization", "Basic " + NEEDLES[3].decode())]),
    "bearer-lowercase-second": request("/", [T, ("Authorization", f"bearer  {TOKEN} x")]),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_near_miss_carrier_never_reaches_the_service(name: str) -> None:
    result = run([("remote", CORPUS[name])])
    for needle in NEEDLES:
        assert needle not in result.service, (name, result.service)
    if result.service:
        assert b"safetunnel" not in result.service.lower(), (name, result.service)
    else:
        assert result.remote.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (name, result.remote)
        assert result.close.reason == "bad-request" and result.close.refused


def test_the_application_keeps_what_only_resembles_a_carrier() -> None:
    # Strictness must not eat the application's own data: short "st_" values, names that merely
    # contain the word, ordinary bearer tokens.
    result = run(
        [
            (
                "remote",
                request(
                    "/st_docs?ref=st_abc&q=token",
                    [T, ("Cookie", "st_theme=dark"), ("Authorization", "Bearer app-secret")],
                ),
            )
        ]
    )
    assert result.connects == 1
    assert b"GET /st_docs?ref=st_abc&q=token HTTP/1.1" in result.service
    assert b"Cookie: st_theme=dark\r\n" in result.service


def test_a_link_never_puts_a_token_back_into_its_location() -> None:
    for target in (
        f"/?safetunnel_token={TOKEN}&Safetunnel_Token={TOKEN}",
        f"/?safetunnel_token={TOKEN}&x=1;safetunnel_token={TOKEN}",
        f"/{TOKEN}?safetunnel_token={TOKEN}",
    ):
        result = run([("remote", request(target))])
        for needle in NEEDLES:
            assert needle not in result.remote, (target, result.remote)
        assert result.service == b""


LOCATIONS = {
    "/x/..//evil.example": "/evil.example",
    "/x/%2e%2e//evil.example": "/evil.example",
    "/x/%2E./%2e//evil.example/y": "/evil.example/y",
    "/./\\evil.example": "/evil.example",
    "/a/b/../c": "/a/c",
    "/a/./b/.": "/a/b/",
    "/..": "/",
    "/../..//evil.example": "/evil.example",
    "/a//b": "/a//b",
    "http://other.example//evil.example/x": "/evil.example/x",
    "*": "/",
}


@pytest.mark.parametrize("target", sorted(LOCATIONS))
def test_the_link_redirect_path_is_normalised_and_same_origin(target: str) -> None:
    result = run([("remote", request(f"{target}?safetunnel_token={TOKEN}&k=v"))])
    location = next(
        line.split(b": ", 1)[1].decode()
        for line in result.remote.split(b"\r\n")
        if line.startswith(b"Location:")
    )
    assert location == LOCATIONS[target] + "?k=v"
    resolved = urllib.parse.urlsplit(urllib.parse.urljoin("http://127.0.0.1:8000/p", location))
    assert resolved.netloc == "127.0.0.1:8000"
    assert "\\" not in location and not location.startswith("//")
