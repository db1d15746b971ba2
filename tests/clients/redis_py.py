"""redis-py against turnstile, driven by tests/compat.rs over stdin/stdout.

Connects with TS_OLD (as TS_USER, or the default user if empty) in RESP TS_PROTO,
prints READY, waits for ROTATED on stdin (the test has added TS_NEW and deleted
TS_OLD meanwhile), checks the same connection still works, that TS_NEW gets in and
TS_OLD gets WRONGPASS, then prints OK. Any failure raises (non-zero exit).
"""

import os
import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST, PORT = os.environ["TS_HOST"], int(os.environ["TS_PORT"])
USER = os.environ["TS_USER"] or None
PROTO = int(os.environ["TS_PROTO"])
KEY = os.environ["TS_KEY"]


def connect(password):
    # One connection, never a pool: CLIENT ID must prove it survived the rotation.
    # No retries: they would hide a dropped connection, and redis-py retries even a
    # refused AUTH, with back-off (seconds per WRONGPASS).
    return redis.Redis(host=HOST, port=PORT, username=USER, password=password, protocol=PROTO,
                       single_connection_client=True, socket_timeout=10, retry=Retry(NoBackoff(), 0))


def check(c, value):
    assert c.set(KEY, value) is True
    assert c.get(KEY) == value.encode(), c.get(KEY)
    whoami = c.acl_whoami()
    assert whoami in (USER or "default", (USER or "default").encode()), whoami
    info = c.execute_command("CLIENT", "INFO")
    info = info.decode() if isinstance(info, bytes) else str(info)
    assert f"resp={PROTO}" in info, info


c = connect(os.environ["TS_OLD"])
check(c, "before")
cid = c.client_id()
print(f"READY redis-py {redis.__version__}", flush=True)
assert sys.stdin.readline().strip() == "ROTATED"
check(c, "after")
assert c.client_id() == cid, "the connection was re-established"
check(connect(os.environ["TS_NEW"]), "new")
try:
    connect(os.environ["TS_OLD"]).ping()
    raise AssertionError("the removed password still works")
except redis.exceptions.AuthenticationError as e:
    assert "invalid username-password pair" in str(e), repr(e)
print("OK", flush=True)
