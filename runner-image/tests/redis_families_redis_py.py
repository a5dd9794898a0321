"""Writes redis_families.expected.json: the families of redis_families.py run
on real redis-py (redis.Redis(decode_responses=True)), the reference the
sandbox test holds the sandboxed `redis` to.

    python3 -m venv /tmp/rpy && /tmp/rpy/bin/pip install redis
    eval "$(scripts/redis.sh start)"   # or any empty Redis with RedisJSON
    /tmp/rpy/bin/python runner-image/tests/redis_families_redis_py.py redis://127.0.0.1:6379

It flushes that Redis between families: never point it at one holding data.
"""

import json
import os
import sys

import redis as redis_py

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = ["strings", "hashes", "lists", "sets", "sorted_sets", "streams", "json_docs", "keys_and_scan", "pipelines"]


class Proxy:
    """The client, plus the module's exception classes (redis.ResponseError)."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        if name[0].isupper() and hasattr(redis_py, name):
            return getattr(redis_py, name)
        return getattr(self.client, name)


def main():
    client = redis_py.Redis.from_url(sys.argv[1], decode_responses=True)
    scope = {"redis": Proxy(client)}
    with open(os.path.join(HERE, "redis_families.py")) as f:
        exec(f.read(), scope)
    out = {}
    for name in FAMILIES:
        client.flushdb()
        out[name] = scope[name]()
    with open(os.path.join(HERE, "redis_families.expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
