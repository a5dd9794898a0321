# Implementation code written against redis-py (redis.Redis(decode_responses=True)),
# one function per command family. Each returns what redis-py returns, written out
# by show() (repr, with dict keys and set members sorted), so the sandbox test
# compares exact Python shapes: tuples, sets, floats, None. Run against a real
# redis-py client, the same functions give the same text.


def show(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{show(k)}: {show(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, set):
        return "{" + ", ".join(sorted(show(x) for x in v)) + "}" if v else "set()"
    return repr(v)


def kind(value):
    return {set: "set", list: "list", tuple: "tuple", str: "str", int: "int", float: "float"}.get(type(value), "other")


def strings():
    r = redis
    out = {}
    out["set"] = show([r.set("s:a", "1"), r.set("s:a", "2", nx=True), r.set("s:a", "3", get=True), r.get("s:a"), r.get("s:none")])
    out["ttl"] = show([r.set("s:t", "x", ex=100), r.ttl("s:t") > 90, r.setex("s:e", 50, "y"), r.ttl("s:none")])
    out["mget"] = show([r.mset({"s:m1": "1", "s:m2": "2"}), r.mget("s:m1", "s:m2", "s:none"), r.mget(["s:m1"]), r.msetnx({"s:m1": "9"})])
    out["counters"] = show([r.incr("s:n"), r.incr("s:n", 5), r.incrby("s:n", 2), r.decr("s:n"), r.decrby("s:n", 2), r.incrbyfloat("s:f", 1.5)])
    out["text"] = show([r.append("s:x", "ab"), r.strlen("s:x"), r.getrange("s:x", 0, 0), r.setrange("s:x", 1, "Z"), r.getdel("s:x"), r.getset("s:a", "4"), r.setnx("s:a", "5")])
    return out


def hashes():
    r = redis
    out = {}
    out["set"] = show([r.hset("h:u", "name", "ada"), r.hset("h:u", mapping={"visits": 1, "city": "Paris"}), r.hsetnx("h:u", "name", "x")])
    out["get"] = show([r.hget("h:u", "name"), r.hget("h:u", "none"), r.hmget("h:u", ["name", "city", "none"]), r.hgetall("h:u"), r.hgetall("h:none")])
    out["incr"] = show([r.hincrby("h:u", "visits", 2), r.hincrbyfloat("h:u", "score", 0.5), r.hexists("h:u", "name"), r.hexists("h:u", "none")])
    out["meta"] = show([sorted(r.hkeys("h:u")), sorted(r.hvals("h:u")), r.hlen("h:u"), r.hstrlen("h:u", "name"), r.hdel("h:u", "city", "none")])
    out["scan"] = show(sorted(r.hscan_iter("h:u", match="v*")))
    return out


def lists():
    r = redis
    out = {}
    out["push"] = show([r.lpush("l:q", "b", "a"), r.rpush("l:q", "c", "d"), r.lrange("l:q", 0, -1), r.llen("l:q"), r.lindex("l:q", 1)])
    out["pop"] = show([r.lpop("l:q"), r.rpop("l:q", 2), r.lpop("l:none"), r.lrange("l:q", 0, -1)])
    out["edit"] = show([r.rpush("l:q", "x", "b", "x"), r.lrem("l:q", 0, "x"), r.lset("l:q", 0, "B"), r.linsert("l:q", "AFTER", "B", "y"), r.lpos("l:q", "y"), r.ltrim("l:q", 0, 1), r.lrange("l:q", 0, -1)])
    out["move"] = show([r.lmove("l:q", "l:r", "LEFT", "RIGHT"), r.rpoplpush("l:q", "l:r"), r.lrange("l:r", 0, -1), r.lpushx("l:none", "a")])
    return out


def sets():
    r = redis
    out = {}
    out["add"] = show([r.sadd("t:a", "x", "y", "z"), r.sadd("t:b", "y", "z", "w"), r.srem("t:a", "none"), r.scard("t:a")])
    out["members"] = show([kind(r.smembers("t:a")), sorted(r.smembers("t:a")), r.smembers("t:none"), r.sismember("t:a", "x"), r.sismember("t:a", "q"), r.smismember("t:a", ["x", "q"])])
    out["algebra"] = show([sorted(r.sinter("t:a", "t:b")), sorted(r.sunion(["t:a", "t:b"])), r.sdiff("t:a", "t:b"), r.sinterstore("t:c", ["t:a", "t:b"]), r.smove("t:a", "t:b", "x")])
    out["random"] = show([kind(r.spop("t:c")), kind(r.srandmember("t:b", 2)), sorted(r.sscan_iter("t:b"))])
    return out


def sorted_sets():
    r = redis
    out = {}
    out["add"] = show([r.zadd("z:board", {"alice": 10, "bob": 7, "carol": 3}), r.zadd("z:board", {"dave": 1}, nx=True), r.zadd("z:board", {"bob": 2}, incr=True)])
    out["incr"] = show([r.zincrby("z:board", 5, "alice"), r.zscore("z:board", "alice"), r.zscore("z:board", "none"), r.zmscore("z:board", ["bob", "none"])])
    out["top"] = show([r.zrevrange("z:board", 0, 1, withscores=True), r.zrevrange("z:board", 0, 1), r.zrange("z:board", 0, -1, withscores=True, score_cast_func=int)])
    out["byscore"] = show([r.zrangebyscore("z:board", 2, 10), r.zrangebyscore("z:board", "-inf", "+inf", start=0, num=2, withscores=True), r.zrevrangebyscore("z:board", "+inf", 5, withscores=True), r.zrange("z:board", 1, 9, byscore=True)])
    out["rank"] = show([r.zrank("z:board", "alice"), r.zrevrank("z:board", "alice"), r.zrank("z:board", "none"), r.zrank("z:board", "bob", withscore=True), r.zcard("z:board"), r.zcount("z:board", 0, 5)])
    out["remove"] = show([r.zrem("z:board", "dave"), r.zpopmin("z:board"), r.zpopmax("z:board", 1), r.zrange("z:board", 0, -1, withscores=True)])
    r.zadd("z:x", {"a": 1, "b": 2})
    r.zadd("z:y", {"b": 3, "c": 4})
    out["algebra"] = show([r.zunionstore("z:u", ["z:x", "z:y"]), r.zrange("z:u", 0, -1, withscores=True), r.zinterstore("z:i", {"z:x": 1, "z:y": 2}, aggregate="MAX"), r.zunion(["z:x", "z:y"], withscores=True), list(r.zscan_iter("z:x"))])
    return out


def streams():
    r = redis
    out = {}
    first = r.xadd("x:events", {"kind": "visit", "page": "/"})
    second = r.xadd("x:events", {"kind": "buy"}, maxlen=100)
    out["add"] = show([kind(first), first < second, r.xlen("x:events")])
    entries = r.xrange("x:events")
    out["range"] = show([[kind(e) for e in entries], [fields for _, fields in entries], entries[0][0] == first])
    out["rev"] = show([[f for _, f in r.xrevrange("x:events", count=1)], r.xrange("x:none")])
    read = r.xread({"x:events": "0-0"}, count=1)
    out["read"] = show([read[0][0], [f for _, f in read[0][1]]])
    out["trim"] = show([r.xdel("x:events", first), r.xtrim("x:events", maxlen=0, approximate=False), r.xlen("x:events")])
    return out


def json_docs():
    r = redis
    j = r.json()
    out = {}
    out["set"] = show([j.set("j:doc", "$", {"a": 1, "b": [1, 2], "c": {"d": "x"}}), j.set("j:doc", "$", {}, nx=True), j.set("j:doc", "$.e", 5)])
    out["get"] = show([j.get("j:doc"), j.get("j:doc", "$.a"), j.get("j:doc", ".a"), j.get("j:doc", "$.a", "$.c.d"), j.get("j:none")])
    out["update"] = show([j.numincrby("j:doc", "$.a", 2), j.arrappend("j:doc", "$.b", 3, 4), j.arrlen("j:doc", "$.b"), j.objkeys("j:doc", "$"), j.type("j:doc", "$.a")])
    out["many"] = show([j.mset([("j:m1", "$", 1), ("j:m2", "$", {"x": 1})]), j.mget(["j:m1", "j:m2", "j:none"], "$"), j.delete("j:doc", "$.e"), j.delete("j:m1")])
    return out


def keys_and_scan():
    r = redis
    out = {}
    r.set("visits:home", 1)
    r.set("visits:about", 2)
    r.set("other", 3)
    out["scan"] = show([sorted(r.scan_iter("visits:*")), sorted(r.scan_iter(match="visits:*", count=1)), sorted(r.scan_iter()), sorted(r.scan_iter(_type="string"))])
    cursor, keys = r.scan(0, match="other")
    out["scan_page"] = show([kind(cursor), keys])
    out["expire"] = show([r.expire("other", 100), r.expire("none", 10), r.ttl("other") > 90, r.persist("other"), r.ttl("other"), r.pexpire("other", 100000)])
    out["keys"] = show([r.exists("visits:home", "other", "none"), r.type("other"), r.type("none"), r.rename("other", "renamed"), r.renamenx("renamed", "visits:home"), r.copy("renamed", "copied")])
    out["delete"] = show([r.delete("renamed", "copied", "none"), r.unlink("visits:about"), r.touch("visits:home"), r.ping()])
    r.rpush("nums", 3, 1, 2)
    out["sort"] = show([r.sort("nums"), r.sort("nums", desc=True, start=0, num=2), r.sort("nums", store="sorted"), r.lrange("sorted", 0, -1)])
    return out


def pipelines():
    r = redis
    out = {}
    pipe = r.pipeline(transaction=False)
    pipe.set("p:n", 1).incr("p:n").get("p:n")
    pipe.hset("p:h", mapping={"a": 1}).hgetall("p:h").zadd("p:z", {"m": 2}).zrange("p:z", 0, -1, withscores=True)
    out["pipeline"] = show([len(pipe), pipe.execute(), len(pipe)])
    with r.pipeline() as tx:
        tx.incr("p:n").sadd("p:s", "a").smembers("p:s").json().set("p:j", "$", {"a": 1}).json().get("p:j")
        out["transaction"] = show(tx.execute())
    try:
        r.pipeline().set("p:e", "x").incr("p:e").get("p:e").execute()
        out["error"] = "no error"
    except redis.ResponseError as exc:
        out["error"] = show([isinstance(exc, redis.ResponseError), str(exc)])
    mixed = r.pipeline(transaction=False).set("p:e", "y").incr("p:e").get("p:e").execute(raise_on_error=False)
    out["no_raise"] = show([mixed[0], isinstance(mixed[1], redis.ResponseError), str(mixed[1]), mixed[2]])
    return out
