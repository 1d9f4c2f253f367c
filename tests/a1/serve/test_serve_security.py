"""`a1 serve` on a network: an API key (`Authorization: Bearer`, /health open, /metrics behind it),
the Host header against DNS rebinding (loopback names by default on a loopback bind), JSON-only
POSTs (415: a web page's `text/plain` POST is sent without a CORS preflight), every refusal a
JSON error; the flags, the A1_API_KEY variable and the start-up warnings of `a1 serve` itself."""
from __future__ import annotations

import json
import socket

import pytest

from a1.serve import ServeConfig, build_parser
from a1.serve.cli import config_from_args
from a1.serve.security import AccessPolicy, host_name, is_loopback
from serve_helpers import ServerProcess, raw_request, serving

KEY = "s3cret-Key_0123"
COMPLETION = json.dumps({"prompt": [0, 5, 6], "max_tokens": 2}).encode()
JSON = {"Content-Type": "application/json"}


def call(url: str, method: str, path: str, body=None, **headers):
    status, answer_headers, raw = raw_request(url, method, path, body, headers)
    return status, answer_headers, (json.loads(raw) if raw else None)


@pytest.fixture(scope="module")
def keyed(tiny_checkpoint):
    with serving(tiny_checkpoint, api_key=KEY) as thread:
        yield thread.url


def test_the_api_key_guards_every_endpoint_but_health(keyed):
    bearer = {"Authorization": f"Bearer {KEY}"}
    for method, path, body in [("POST", "/v1/completions", COMPLETION), ("POST", "/generate", b"{}"),
                               ("GET", "/v1/models", None), ("GET", "/get_model_info", None),
                               ("GET", "/metrics", None), ("GET", "/nothing/here", None)]:
        for wrong in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},  # no scheme
                      {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY}x"},
                      {"Authorization": "Bearer \xe9\xff".encode("latin-1")}):  # octets that are no UTF-8
            status, headers, answer = call(keyed, method, path, body, **JSON, **wrong)
            assert status == 401, (path, wrong, answer)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert answer["error"]["type"] == "AuthenticationError" and KEY not in json.dumps(answer)
    assert call(keyed, "POST", "/v1/completions", COMPLETION, **JSON, **bearer)[0] == 200
    assert call(keyed, "POST", "/v1/completions", COMPLETION, **JSON, Authorization=f"bearer  {KEY} ")[0] == 200
    assert call(keyed, "GET", "/metrics", **bearer)[0] == 200
    assert call(keyed, "GET", "/nothing/here", **bearer)[0] == 404  # routes are not revealed before the key
    status, _, health = call(keyed, "GET", "/health")
    assert status == 200 and health["status"] == "ok"


def test_posts_must_be_json(keyed):
    auth = {"Authorization": f"Bearer {KEY}"}
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "application/jsonx", "application/json; charset=latin-1"):
        headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
        status, _, answer = call(keyed, "POST", "/v1/completions", COMPLETION, **headers)
        assert status == 415 and answer["error"]["type"] == "UnsupportedMediaTypeError", content_type
    for content_type in ("application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        assert call(keyed, "POST", "/v1/completions", COMPLETION, **auth, **{"Content-Type": content_type})[0] == 200
    status, headers, answer = call(keyed, "POST", "/health", b"{}", **JSON)  # a GET route: 405, whatever the type
    assert status == 405 and "GET" in headers["Allow"] and answer["error"]["code"] == 405


def test_the_host_header_is_checked_against_dns_rebinding(keyed):
    port = keyed.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "127.0.0.2",
                 "app.localhost", "localhost."):
        assert call(keyed, "GET", "/health", Host=host)[0] == 200, host
    for host in (f"evil.example:{port}", "10.0.0.1", "localhost.evil.example", "127.0.0.1.evil.example", "",
                 "\xff".encode("latin-1")):
        status, _, answer = call(keyed, "GET", "/health", Host=host)
        assert status == 403 and answer["error"]["type"] == "PermissionDeniedError", host
    # refused before the key is even looked at
    assert call(keyed, "POST", "/v1/completions", COMPLETION, **JSON, Authorization=f"Bearer {KEY}",
                Host=f"evil.example:{port}")[0] == 403


def test_expect_100_continue_is_sent_only_to_a_known_client(keyed):
    port = int(keyed.rsplit(":", 1)[1])

    def ask(headers: str) -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(COMPLETION)}\r\n{headers}\r\n".encode("latin-1"))
        return sock, sock.recv(65536)

    sock, first = ask("Expect: 100-continue\r\n")  # no key: refused before the body is invited
    sock.close()
    assert first.startswith(b"HTTP/1.1 401") and b"AuthenticationError" in first
    sock, first = ask(f"Expect: 100-continue\r\nAuthorization: Bearer {KEY}\r\n")
    assert first.startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(COMPLETION)
    answer = b""
    while b"usage" not in answer:
        answer += sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200")
    for path in ("/v1/completions", "/nowhere"):  # aiohttp failed to quote undecodable bytes in its 417: a 500
        status, _, answer = call(keyed, "POST", path, COMPLETION, **JSON, Authorization=f"Bearer {KEY}",
                                 Expect=b"\xff\xfe-continue")
        assert status == 417 and answer["error"]["type"] == "ExpectationFailedError"


def test_allowed_hosts_list_wildcards_and_any(tiny_checkpoint):
    with serving(tiny_checkpoint, allowed_hosts=["api.example.com", ".corp.example", "10.0.0.5"]) as thread:
        url = thread.url
        for host in ("api.example.com:8000", "API.example.com", "corp.example", "gpu.corp.example", "10.0.0.5:80",
                     "localhost"):
            assert call(url, "GET", "/v1/models", Host=host)[0] == 200, host
        for host in ("example.com", "api.example.com.evil", "xcorp.example", "10.0.0.6"):
            assert call(url, "GET", "/v1/models", Host=host)[0] == 403, host
    with serving(tiny_checkpoint, allowed_hosts=["*"]) as thread:
        assert call(thread.url, "GET", "/v1/models", Host="anything.example")[0] == 200


def test_the_default_host_list_follows_the_bind_address():
    assert host_name("[::1]:8000") == "::1" and host_name("Example.COM.:80") == "example.com"
    assert is_loopback("127.9.9.9") and is_loopback("::1") and not is_loopback("0.0.0.0")
    policy = AccessPolicy()
    policy.bind("127.0.0.1")
    assert policy.host_allowed("localhost:1") and not policy.host_allowed("evil.example")
    assert policy.host_allowed(None)  # HTTP/1.0 without Host: not a browser
    policy.bind("0.0.0.0")
    assert policy.host_allowed("evil.example") and len(policy.warnings("0.0.0.0")) == 2
    keyed = AccessPolicy(api_key=KEY, allowed_hosts=["a.example"])
    keyed.bind("0.0.0.0")
    assert not keyed.host_allowed("evil.example") and keyed.warnings("0.0.0.0") == []
    assert KEY not in repr(keyed) and keyed.warnings("127.0.0.1") == []


def test_flags_environment_and_validation(monkeypatch, tmp_path):
    parse = build_parser().parse_args
    monkeypatch.setenv("A1_API_KEY", "from-env")
    assert config_from_args(parse(["--model", "m"])).api_key == "from-env"
    config = config_from_args(parse(["--model", "m", "--api-key", KEY, "--allowed-hosts", "a.example, b.example:80",
                                     "--read-timeout", "5", "--max-request-bytes", "4096"]))
    assert config.api_key == KEY and config.allowed_hosts == ("a.example", "b.example")  # the flag wins
    assert config.read_timeout == 5.0 and config.max_request_bytes == 4096 and KEY not in repr(config)
    monkeypatch.delenv("A1_API_KEY")
    assert config_from_args(parse(["--model", "m"])).api_key is None
    for bad in (dict(api_key="has space"), dict(api_key=""), dict(api_key="caf\xe9"), dict(allowed_hosts=()),
                dict(allowed_hosts=("a b",)), dict(allowed_hosts=("http://x/",)), dict(read_timeout=0),
                dict(read_timeout=float("nan")), dict(read_timeout=-1)):
        with pytest.raises(ValueError) as err:
            ServeConfig(model="m", **bad)
        assert "has space" not in str(err.value)  # a key is never echoed


def test_a1_serve_takes_the_key_from_the_environment_and_warns_when_exposed(tiny_checkpoint):
    with ServerProcess("--model", tiny_checkpoint, "--host", "0.0.0.0", "--max-model-len", "64",
                       env={"A1_API_KEY": KEY}) as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        assert call(url, "GET", "/v1/models")[0] == 401
        assert call(url, "GET", "/v1/models", Authorization=f"Bearer {KEY}", Host="any.example")[0] == 200
        assert call(url, "GET", "/health")[0] == 200
        log = server.log()
        assert server.stop() == 0
    assert "--allowed-hosts" in log and "without an API key" not in log and KEY not in log
