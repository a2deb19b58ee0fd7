"""Security: the task allow-list, Redis ACL users over TLS with client certificates, and no secret in any log line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.redis_store import RedisStore

from .support.processes import CeleryProcess, drain_queue, wait_until, write_app
from .support.redis_server import free_port, server_binary

T0 = 1_800_000_000.0
PASSWORD = "s3cret-Pa55-w0rd"


def every_10s(task: str) -> str:
    return json.dumps({"task": task, "interval": {"every": 10, "period": "seconds"}, "args": []})


# --- allow-list ---------------------------------------------------------------------------------------


def test_entries_outside_the_task_allowlist_are_quarantined_naming_the_task_field(
        app: Celery, store: RedisStore, redis_url: str) -> None:
    app.conf.redis_scheduler_task_allowlist = ["tasks.safe", "reports.*"]
    store.put_raw({"safe": every_10s("tasks.safe"), "report": every_10s("reports.daily"),
                   "evil": every_10s("os.system"), "near-miss": every_10s("tasks.safe.extra")})
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    store.run_now_names(["evil"])  # an explicit request does not get past the allow-list either
    sched.tick(now=T0 + 10)
    sched.close()
    broker = redis.Redis.from_url(f"{redis_url}/1")
    assert sorted(m.task for m in drain_queue(broker, app.conf.task_default_queue)) == ["reports.daily", "tasks.safe"]
    broker.close()
    for name, task in (("evil", "os.system"), ("near-miss", "tasks.safe.extra")):
        assert store.invalid_reason(name) == f"entry {name!r}: field 'task': {task!r} is not in redis_scheduler_task_allowlist"
        assert store.run_state(name)[0] == 0
    assert store.count() == 4  # quarantined, not deleted


def test_allowlist_setting_forms() -> None:
    app = Celery("a", set_as_current=False)
    assert Settings.from_app(app).task_allowed("anything")  # no list: any task
    app.conf.redis_scheduler_task_allowlist = "tasks.a, billing.*"
    settings = Settings.from_app(app)
    assert settings.task_allowlist == ("tasks.a", "billing.*")
    assert settings.task_allowed("billing.invoice") and not settings.task_allowed("tasks.b")
    app.conf.redis_scheduler_task_allowlist = {"tasks": "a"}
    with pytest.raises(ValueError, match="redis_scheduler_task_allowlist"):
        Settings.from_app(app)


# --- ACL user, TLS, client certificates ------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all signed by that CA."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=cbr test CA", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=directory)
    return {name: directory / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


#: What a redis-server (or valkey-server) built without TLS answers to ``--tls-port``: Redis 6.x and 7.0 do
#: not know the tls-* directives; 7.2 and later, and Valkey, know them but have no TLS connection type.
NO_TLS_ANSWERS = (
    re.compile(r"^>>> 'tls-[a-z-]+ .*'\nBad directive or wrong number of arguments", re.MULTILINE),
    re.compile(r"Failed finding connection listener of tls", re.IGNORECASE),
    re.compile(r"Connection type tls not builtin", re.IGNORECASE),
)


def built_without_tls(output: str) -> bool:
    """Whether a server that exited said it cannot do TLS at all (and not, say, that its port was taken)."""
    return no_tls_reason("redis-server", output) is not None


def no_tls_reason(binary: str, output: str) -> str | None:
    """The one-line reason the TLS test skips with: the server's own no-TLS answer, its lines joined; None if it gave none."""
    for answer in NO_TLS_ANSWERS:
        found = answer.search(output)
        if found:
            return f"{binary} was built without TLS: " + " ".join(found.group(0).split())
    return None


class TLSRedis:
    """A redis-server that speaks only TLS, requires client certificates, and has one ACL user with a password."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cbr-tls-"))
        self.certs = make_certificates(self.dir)
        self.port = free_port()
        self.binary = server_binary()
        self.process = subprocess.Popen(
            [self.binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir),
             "--tls-cert-file", str(self.certs["server.crt"]), "--tls-key-file", str(self.certs["server.key"]),
             "--tls-ca-cert-file", str(self.certs["ca.crt"]), "--tls-auth-clients", "yes",
             "--user", "default", "off", "--user", "beat", "on", f">{PASSWORD}", "~*", "&*", "+@all"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    @property
    def ssl_options(self) -> dict[str, Any]:
        return {"ssl_ca_certs": str(self.certs["ca.crt"]), "ssl_certfile": str(self.certs["client.crt"]),
                "ssl_keyfile": str(self.certs["client.key"]), "ssl_cert_reqs": "required"}

    def url(self, password: str = PASSWORD) -> str:
        return f"rediss://beat:{password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url(), **self.ssl_options)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                reason = no_tls_reason(self.binary, out)
                if reason:
                    pytest.skip(reason)
                raise RuntimeError(f"TLS redis-server {self.binary} did not start:\n{out}")
            try:
                with self.client() as conn:
                    conn.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def tls_redis() -> Iterator[TLSRedis]:
    server = TLSRedis()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.e2e
def test_beat_over_tls_with_an_acl_user_and_no_secret_in_its_log(tmp_path: Path, tls_redis: TLSRedis, redis_url: str,
                                                                 prefix: str) -> None:
    queue = f"q-{prefix}"
    with tls_redis.client() as conn:
        plain = redis.Redis(host="127.0.0.1", port=tls_redis.port, socket_connect_timeout=1, retry=None)
        with pytest.raises(redis.ConnectionError):
            plain.ping()  # a client without TLS gets nowhere
        store = RedisStore(conn, prefix)
        store.put_raw({"allowed": every_10s("tasks.allowed").replace('"every": 10', '"every": 1'),
                       "forbidden": every_10s("evil.task")})

        def start_beat(password: str) -> CeleryProcess:
            write_app(tmp_path, f"{redis_url}/1", tls_redis.url(password), prefix, extra=(
                f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_redis_options={tls_redis.ssl_options!r},"
                " redis_scheduler_task_allowlist=['tasks.*'])\n"))
            return CeleryProcess.beat(tmp_path)

        broker = redis.Redis.from_url(f"{redis_url}/1")
        beat = start_beat(PASSWORD)
        try:
            wait_until(lambda: beat.alive() and len(drain_queue(broker, queue)) > 0, timeout=30, what="a task sent")
            wait_until(lambda: store.invalid_reason("forbidden"), timeout=10, what="the forbidden entry's quarantine")
        finally:
            code = beat.stop()
        assert code == 0, beat.output()
        output = beat.output()
        assert PASSWORD not in output
        assert f"rediss://beat:****@127.0.0.1:{tls_redis.port}/0" in output  # the banner, masked
        assert "field 'task'" in (store.invalid_reason("forbidden") or "")

        wrong = "Wr0ng-pa55word"
        beat = start_beat(wrong)
        try:
            wait_until(lambda: "Redis unavailable" in beat.output(), timeout=60, what="the refused login logged")
            assert beat.alive()  # refused, logged, retrying: not stopped
        finally:
            beat.stop()
        output = beat.output()
        assert wrong not in output and PASSWORD not in output
        assert "****" in output
        broker.close()


def test_only_the_servers_own_no_tls_answer_skips_the_tls_test() -> None:
    """A port clash or any other failure to start must fail the TLS test, not skip it."""
    redis_62 = "*** FATAL CONFIG FILE ERROR (Redis 6.2.14) ***\nReading the configuration file, at line 3\n" \
               ">>> 'tls-port \"16999\"'\nBad directive or wrong number of arguments\n"
    assert built_without_tls(redis_62)
    assert no_tls_reason("/usr/bin/redis-server", redis_62) == ("/usr/bin/redis-server was built without TLS: >>> "
                                                               "'tls-port \"16999\"' Bad directive or wrong number of arguments")
    assert built_without_tls("# Failed finding connection listener of tls\n")
    clash = "# Warning: Could not create server TCP listening socket *:6380: bind: Address already in use\n" \
            "# Failed listening on port 6380 (tls), aborting.\n"
    assert not built_without_tls(clash)
    bad_cert = "# Failed to load certificate: /tmp/x/server.crt: error:80000002:system library::No such file or directory\n" \
               "# Failed to configure TLS. Check logs for more info.\n"
    assert not built_without_tls(bad_cert)
    other_directive = ">>> 'not-a-directive \"yes\"'\nBad directive or wrong number of arguments\n"
    assert not built_without_tls(other_directive)
