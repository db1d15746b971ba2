"""redis-py over TLS against turnstile: prints one line per step, exits non-zero on
any surprise. Usage: redis_py_tls.py PORT PASSWORD CA_FILE [CERT KEY]"""
import sys

import redis

port, password, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
extra = {}
if len(sys.argv) > 5:
    extra = {"ssl_certfile": sys.argv[4], "ssl_keyfile": sys.argv[5]}


def client(pw):
    return redis.Redis(host="127.0.0.1", port=port, password=pw, ssl=True, ssl_ca_certs=ca,
                       socket_timeout=10, **extra)


r = client(password)
assert r.ping() is True
assert r.set("py-key", "py-value") is True
assert r.get("py-key") == b"py-value"
pipe = r.pipeline(transaction=True)
pipe.incr("py-counter").incr("py-counter").get("py-counter")
assert pipe.execute() == [1, 2, b"2"], "pipelined transaction"
print("ok: ping set get multi")
try:
    client("wrong-" + password).ping()
    sys.exit("a wrong password was accepted")
except redis.exceptions.AuthenticationError as e:
    assert "WRONGPASS" in str(e) or "invalid username-password" in str(e), str(e)
    print("ok: wrong password refused")
