"""EOL sandbox worker: redis-py's command methods, on the host's command table.

For each command of the table (runner-image/src/store/commands/), the method
redis-py has for it: it builds the command from redis-py's arguments and turns
the host's JSON reply into what redis.Redis(decode_responses=True) returns
(str, tuples, sets, floats). `_commands(x)` gives the client's methods and
`_json_commands(x)` those of `r.json()`, each sending through
`x(command, callback)`: at once for the client, queued for a pipeline (see
redis_proxy.py, which builds both from these).

The worker is one program: worker_script() in sandbox/mod.rs puts the static
check (core/src/sandbox_check.py), this file, redis_proxy.py and worker.py one
after another, in one module namespace. Nothing here runs on load but
definitions. A unit test (store/commands/table.rs) reads this file from the
definition of `_commands` to its end and checks it names exactly the table's
commands: keep those two functions last.
"""

import types


def _float(value):
    return None if value is None else float(value)


def _to_set(reply):
    return set(reply or ())


def _pairs(cast):
    def convert(reply):
        return [(member, cast(score)) for member, score in reply or ()]

    return convert


def _rank(reply):
    if type(reply) is list:
        return [reply[0], _float(reply[1])]
    return reply


def _entries(reply):
    return [(entry_id, fields) for entry_id, fields in reply or ()]


def _xread(reply):
    return [[stream, _entries(entries)] for stream, entries in reply or ()]


def _scan_reply(convert=None):
    def scan_reply(reply):
        cursor, items = reply
        return cursor, (items if convert is None else convert(items))

    return scan_reply


def _scan_args(command, match, count):
    if match is not None:
        command += ["MATCH", match]
    if count is not None:
        command += ["COUNT", count]
    return command


def _pages(fetch, items=None):
    """Iterates over every page of a SCAN-like cursor: fetch(cursor) -> (cursor, page)."""
    cursor = 0
    while True:
        cursor, page = fetch(cursor)
        yield from (page if items is None else items(page))
        if cursor == 0:
            return


def _list_or_args(keys, args):
    if isinstance(keys, (str, bytes)):
        return [keys, *args]
    return [*keys, *args]


def _flags(**flags):
    return [word for word, on in flags.items() if on]


def _json_text(value):
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise _DataError(f"cannot store as JSON: {exc}") from None


def _search_result(reply):
    docs = []
    for result in reply.get("results") or ():
        fields = dict(result.get("fields") or {})
        fields.update(id=result.get("key"), payload=None)
        docs.append(types.SimpleNamespace(**fields))
    return types.SimpleNamespace(total=reply.get("total"), docs=docs)


def _zaggregate(command, dest, keys, aggregate=None, withscores=False):
    pieces = [command]
    if dest is not None:
        pieces.append(dest)
    weights = None
    if isinstance(keys, dict):
        keys, weights = list(keys.keys()), list(keys.values())
    keys = list(keys)
    pieces += [len(keys), *keys]
    if weights:
        pieces += ["WEIGHTS", *weights]
    if aggregate:
        if str(aggregate).upper() not in ("SUM", "MIN", "MAX"):
            raise _DataError("aggregate can be sum, min or max.")
        pieces += ["AGGREGATE", str(aggregate).upper()]
    if withscores:
        pieces.append("WITHSCORES")
    return pieces



def _commands(x):
    """redis-py's command methods, each sending its command through
    `x(command, callback)`: at once for the client, queued for a pipeline.
    (Names like `set` and `type` shadow builtins in here only.)"""

    # Keys
    def delete(*names):
        return x(["DEL", *names], None)

    def unlink(*names):
        return x(["UNLINK", *names], None)

    def exists(*names):
        return x(["EXISTS", *names], None)

    def touch(*args):
        return x(["TOUCH", *args], None)

    def expire(name, time, nx=False, xx=False, gt=False, lt=False):
        return x(["EXPIRE", name, time, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def pexpire(name, time, nx=False, xx=False, gt=False, lt=False):
        return x(["PEXPIRE", name, time, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def expireat(name, when, nx=False, xx=False, gt=False, lt=False):
        return x(["EXPIREAT", name, when, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def pexpireat(name, when, nx=False, xx=False, gt=False, lt=False):
        return x(["PEXPIREAT", name, when, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def persist(name):
        return x(["PERSIST", name], None)

    def ttl(name):
        return x(["TTL", name], None)

    def pttl(name):
        return x(["PTTL", name], None)

    def expiretime(key):
        return x(["EXPIRETIME", key], None)

    def pexpiretime(key):
        return x(["PEXPIRETIME", key], None)

    def type(name):
        return x(["TYPE", name], None)

    def rename(src, dst):
        return x(["RENAME", src, dst], None)

    def renamenx(src, dst):
        return x(["RENAMENX", src, dst], None)

    def copy(source, destination, destination_db=None, replace=False):
        command = ["COPY", source, destination]
        if destination_db is not None:
            command += ["DB", destination_db]  # refused by the host: another database
        if replace:
            command.append("REPLACE")
        return x(command, None)

    def scan(cursor=0, match=None, count=None, _type=None, **kwargs):
        command = _scan_args(["SCAN", cursor], match, count)
        if _type is not None:
            command += ["TYPE", _type]
        return x(command, tuple)

    def scan_iter(match=None, count=None, _type=None, **kwargs):
        return _pages(lambda cursor: scan(cursor, match, count, _type))

    def _sort(command, name, start, num, by, get, desc, alpha, store):
        pieces = [command, name]
        if by is not None:
            pieces += ["BY", by]  # refused by the host: patterns reach other keys
        if (start is None) != (num is None):
            raise _DataError("``start`` and ``num`` must both be specified")
        if start is not None:
            pieces += ["LIMIT", start, num]
        if get is not None:
            for pattern in [get] if isinstance(get, (str, bytes)) else get:
                pieces += ["GET", pattern]
        if desc:
            pieces.append("DESC")
        if alpha:
            pieces.append("ALPHA")
        if store is not None:
            pieces += ["STORE", store]
        return x(pieces, None)

    def sort(name, start=None, num=None, by=None, get=None, desc=False, alpha=False, store=None, groups=False):
        return _sort("SORT", name, start, num, by, get, desc, alpha, store)

    def sort_ro(key, start=None, num=None, by=None, get=None, desc=False, alpha=False):
        return _sort("SORT_RO", key, start, num, by, get, desc, alpha, None)

    def ping(**kwargs):
        return x(["PING"], None)

    def keys(pattern="*", **kwargs):
        return x(["KEYS", pattern], None)  # refused by the host, saying to use scan_iter

    def flushdb(asynchronous=False, **kwargs):
        return x(["FLUSHDB"], None)  # refused by the host

    def flushall(asynchronous=False, **kwargs):
        return x(["FLUSHALL"], None)  # refused by the host

    def execute_command(*args, **options):
        return x(list(args), None)

    # Strings
    def get(name):
        return x(["GET", name], None)

    def set(name, value, ex=None, px=None, nx=False, xx=False, keepttl=False, get=False, exat=None, pxat=None):
        command = ["SET", name, value]
        for word, amount in (("EX", ex), ("PX", px), ("EXAT", exat), ("PXAT", pxat)):
            if amount is not None:
                command += [word, amount]
        command += _flags(KEEPTTL=keepttl, NX=nx, XX=xx, GET=get)
        return x(command, None)

    def setnx(name, value):
        return x(["SETNX", name, value], None)

    def setex(name, time, value):
        return x(["SETEX", name, time, value], None)

    def psetex(name, time_ms, value):
        return x(["PSETEX", name, time_ms, value], None)

    def getset(name, value):
        return x(["GETSET", name, value], None)

    def getdel(name):
        return x(["GETDEL", name], None)

    def getex(name, ex=None, px=None, exat=None, pxat=None, persist=False):
        command = ["GETEX", name]
        for word, amount in (("EX", ex), ("PX", px), ("EXAT", exat), ("PXAT", pxat)):
            if amount is not None:
                command += [word, amount]
        return x(command + _flags(PERSIST=persist), None)

    def mget(keys, *args):
        return x(["MGET", *_list_or_args(keys, args)], None)

    def mset(mapping):
        return x(["MSET", *[part for pair in mapping.items() for part in pair]], None)

    def msetnx(mapping):
        return x(["MSETNX", *[part for pair in mapping.items() for part in pair]], None)

    def incr(name, amount=1):
        return x(["INCRBY", name, amount], None)

    def decr(name, amount=1):
        return x(["DECRBY", name, amount], None)

    def incrbyfloat(name, amount=1.0):
        return x(["INCRBYFLOAT", name, amount], _float)

    def append(key, value):
        return x(["APPEND", key, value], None)

    def strlen(name):
        return x(["STRLEN", name], None)

    def getrange(key, start, end):
        return x(["GETRANGE", key, start, end], None)

    def setrange(name, offset, value):
        return x(["SETRANGE", name, offset, value], None)

    # Hashes
    def hget(name, key):
        return x(["HGET", name, key], None)

    def hset(name, key=None, value=None, mapping=None, items=None):
        pieces = [] if key is None else [key, value]
        if items:
            pieces += items
        if mapping:
            for pair in mapping.items():
                pieces += pair
        if not pieces:
            raise _DataError("'hset' with no key value pairs")
        return x(["HSET", name, *pieces], None)

    def hsetnx(name, key, value):
        return x(["HSETNX", name, key, value], None)

    def hmset(name, mapping):
        if not mapping:
            raise _DataError("'hmset' with 'mapping' of length 0")
        return x(["HMSET", name, *[part for pair in mapping.items() for part in pair]], None)

    def hmget(name, keys, *args):
        return x(["HMGET", name, *_list_or_args(keys, args)], None)

    def hgetall(name):
        return x(["HGETALL", name], None)

    def hdel(name, *keys):
        return x(["HDEL", name, *keys], None)

    def hexists(name, key):
        return x(["HEXISTS", name, key], None)

    def hincrby(name, key, amount=1):
        return x(["HINCRBY", name, key, amount], None)

    def hincrbyfloat(name, key, amount=1.0):
        return x(["HINCRBYFLOAT", name, key, amount], _float)

    def hkeys(name):
        return x(["HKEYS", name], None)

    def hvals(name):
        return x(["HVALS", name], None)

    def hlen(name):
        return x(["HLEN", name], None)

    def hstrlen(name, key):
        return x(["HSTRLEN", name, key], None)

    def hscan(name, cursor=0, match=None, count=None, no_values=None):
        return x(_scan_args(["HSCAN", name, cursor], match, count), tuple)

    def hscan_iter(name, match=None, count=None, no_values=None):
        return _pages(lambda cursor: hscan(name, cursor, match, count), dict.items)

    # Lists
    def lpush(name, *values):
        return x(["LPUSH", name, *values], None)

    def rpush(name, *values):
        return x(["RPUSH", name, *values], None)

    def lpushx(name, *values):
        return x(["LPUSHX", name, *values], None)

    def rpushx(name, *values):
        return x(["RPUSHX", name, *values], None)

    def lpop(name, count=None):
        return x(["LPOP", name] + ([] if count is None else [count]), None)

    def rpop(name, count=None):
        return x(["RPOP", name] + ([] if count is None else [count]), None)

    def lrange(name, start, end):
        return x(["LRANGE", name, start, end], None)

    def llen(name):
        return x(["LLEN", name], None)

    def lindex(name, index):
        return x(["LINDEX", name, index], None)

    def lset(name, index, value):
        return x(["LSET", name, index, value], None)

    def lrem(name, count, value):
        return x(["LREM", name, count, value], None)

    def ltrim(name, start, end):
        return x(["LTRIM", name, start, end], None)

    def linsert(name, where, refvalue, value):
        return x(["LINSERT", name, where, refvalue, value], None)

    def lpos(name, value, rank=None, count=None, maxlen=None):
        command = ["LPOS", name, value]
        for word, option in (("RANK", rank), ("COUNT", count), ("MAXLEN", maxlen)):
            if option is not None:
                command += [word, option]
        return x(command, None)

    def lmove(first_list, second_list, src="LEFT", dest="RIGHT"):
        return x(["LMOVE", first_list, second_list, src, dest], None)

    def rpoplpush(src, dst):
        return x(["RPOPLPUSH", src, dst], None)

    # Sets
    def sadd(name, *values):
        return x(["SADD", name, *values], None)

    def srem(name, *values):
        return x(["SREM", name, *values], None)

    def smembers(name):
        return x(["SMEMBERS", name], _to_set)

    def sismember(name, value):
        return x(["SISMEMBER", name, value], None)

    def smismember(name, values, *args):
        return x(["SMISMEMBER", name, *_list_or_args(values, args)], None)

    def scard(name):
        return x(["SCARD", name], None)

    def spop(name, count=None):
        return x(["SPOP", name] + ([] if count is None else [count]), None)

    def srandmember(name, number=None):
        return x(["SRANDMEMBER", name] + ([] if number is None else [number]), None)

    def sinter(keys, *args):
        return x(["SINTER", *_list_or_args(keys, args)], _to_set)

    def sunion(keys, *args):
        return x(["SUNION", *_list_or_args(keys, args)], _to_set)

    def sdiff(keys, *args):
        return x(["SDIFF", *_list_or_args(keys, args)], _to_set)

    def sinterstore(dest, keys, *args):
        return x(["SINTERSTORE", dest, *_list_or_args(keys, args)], None)

    def sunionstore(dest, keys, *args):
        return x(["SUNIONSTORE", dest, *_list_or_args(keys, args)], None)

    def sdiffstore(dest, keys, *args):
        return x(["SDIFFSTORE", dest, *_list_or_args(keys, args)], None)

    def smove(src, dst, value):
        return x(["SMOVE", src, dst, value], None)

    def sscan(name, cursor=0, match=None, count=None):
        return x(_scan_args(["SSCAN", name, cursor], match, count), tuple)

    def sscan_iter(name, match=None, count=None):
        return _pages(lambda cursor: sscan(name, cursor, match, count))

    # Sorted sets
    def zadd(name, mapping, nx=False, xx=False, ch=False, incr=False, gt=False, lt=False):
        if not mapping:
            raise _DataError("ZADD requires at least one element/score pair")
        if nx and xx:
            raise _DataError("ZADD allows either 'nx' or 'xx', not both")
        if incr and len(mapping) != 1:
            raise _DataError("ZADD option 'incr' only works when passing a single element/score pair")
        command = ["ZADD", name, *_flags(NX=nx, XX=xx, GT=gt, LT=lt, CH=ch, INCR=incr)]
        for member, score in mapping.items():
            command += [score, member]
        return x(command, _float if incr else None)

    def zincrby(name, amount, value):
        return x(["ZINCRBY", name, amount, value], _float)

    def zscore(name, value):
        return x(["ZSCORE", name, value], _float)

    def zmscore(key, members):
        if not members:
            raise _DataError("ZMSCORE members must be a non-empty list")
        return x(["ZMSCORE", key, *members], lambda reply: [_float(s) for s in reply])

    def _limit(offset, num):
        if (offset is None) != (num is None):
            raise _DataError("``offset`` and ``num`` must both be specified")
        return [] if offset is None else ["LIMIT", offset, num]

    def zrange(name, start, end, desc=False, withscores=False, score_cast_func=float,
               byscore=False, bylex=False, offset=None, num=None):
        if bylex and withscores:
            raise _DataError("``withscores`` not supported in combination with ``bylex``")
        command = ["ZRANGE", name, start, end, *_flags(BYSCORE=byscore, BYLEX=bylex, REV=desc)]
        command += _limit(offset, num) + _flags(WITHSCORES=withscores)
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrevrange(name, start, end, withscores=False, score_cast_func=float):
        command = ["ZREVRANGE", name, start, end, *_flags(WITHSCORES=withscores)]
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrangebyscore(name, min, max, start=None, num=None, withscores=False, score_cast_func=float):
        command = ["ZRANGEBYSCORE", name, min, max, *_limit(start, num), *_flags(WITHSCORES=withscores)]
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrevrangebyscore(name, max, min, start=None, num=None, withscores=False, score_cast_func=float):
        command = ["ZREVRANGEBYSCORE", name, max, min, *_limit(start, num), *_flags(WITHSCORES=withscores)]
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrangebylex(name, min, max, start=None, num=None):
        return x(["ZRANGEBYLEX", name, min, max, *_limit(start, num)], None)

    def zrevrangebylex(name, max, min, start=None, num=None):
        return x(["ZREVRANGEBYLEX", name, max, min, *_limit(start, num)], None)

    def zrank(name, value, withscore=False):
        return x(["ZRANK", name, value, *_flags(WITHSCORE=withscore)], _rank)

    def zrevrank(name, value, withscore=False):
        return x(["ZREVRANK", name, value, *_flags(WITHSCORE=withscore)], _rank)

    def zcard(name):
        return x(["ZCARD", name], None)

    def zcount(name, min, max):
        return x(["ZCOUNT", name, min, max], None)

    def zlexcount(name, min, max):
        return x(["ZLEXCOUNT", name, min, max], None)

    def zrem(name, *values):
        return x(["ZREM", name, *values], None)

    def zremrangebyrank(name, min, max):
        return x(["ZREMRANGEBYRANK", name, min, max], None)

    def zremrangebyscore(name, min, max):
        return x(["ZREMRANGEBYSCORE", name, min, max], None)

    def zremrangebylex(name, min, max):
        return x(["ZREMRANGEBYLEX", name, min, max], None)

    def zpopmin(name, count=None):
        return x(["ZPOPMIN", name] + ([] if count is None else [count]), _pairs(float))

    def zpopmax(name, count=None):
        return x(["ZPOPMAX", name] + ([] if count is None else [count]), _pairs(float))

    def zunionstore(dest, keys, aggregate=None):
        return x(_zaggregate("ZUNIONSTORE", dest, keys, aggregate), None)

    def zinterstore(dest, keys, aggregate=None):
        return x(_zaggregate("ZINTERSTORE", dest, keys, aggregate), None)

    def zdiffstore(dest, keys):
        return x(_zaggregate("ZDIFFSTORE", dest, keys), None)

    def zunion(keys, aggregate=None, withscores=False, score_cast_func=float):
        command = _zaggregate("ZUNION", None, keys, aggregate, withscores)
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zinter(keys, aggregate=None, withscores=False):
        command = _zaggregate("ZINTER", None, keys, aggregate, withscores)
        return x(command, _pairs(float) if withscores else None)

    def zdiff(keys, withscores=False):
        command = _zaggregate("ZDIFF", None, keys, None, withscores)
        return x(command, _pairs(float) if withscores else None)

    def zrangestore(dest, name, start, end, byscore=False, bylex=False, desc=False, offset=None, num=None):
        command = ["ZRANGESTORE", dest, name, start, end, *_flags(BYSCORE=byscore, BYLEX=bylex, REV=desc)]
        return x(command + _limit(offset, num), None)

    def zscan(name, cursor=0, match=None, count=None, score_cast_func=float):
        return x(_scan_args(["ZSCAN", name, cursor], match, count), _scan_reply(_pairs(score_cast_func)))

    def zscan_iter(name, match=None, count=None, score_cast_func=float):
        return _pages(lambda cursor: zscan(name, cursor, match, count, score_cast_func))

    # Streams
    def xadd(name, fields, id="*", maxlen=None, approximate=True, nomkstream=False, minid=None, limit=None):
        if maxlen is not None and minid is not None:
            raise _DataError("Only one of ```maxlen``` or ```minid``` may be specified")
        if not isinstance(fields, dict) or not fields:
            raise _DataError("XADD fields must be a non-empty dict")
        command = ["XADD", name]
        for word, threshold in (("MAXLEN", maxlen), ("MINID", minid)):
            if threshold is not None:
                command += [word] + (["~"] if approximate else []) + [threshold]
        if limit is not None:
            command += ["LIMIT", limit]
        command += _flags(NOMKSTREAM=nomkstream) + [id]
        for pair in fields.items():
            command += pair
        return x(command, None)

    def xrange(name, min="-", max="+", count=None):
        command = ["XRANGE", name, min, max] + ([] if count is None else ["COUNT", count])
        return x(command, _entries)

    def xrevrange(name, max="+", min="-", count=None):
        command = ["XREVRANGE", name, max, min] + ([] if count is None else ["COUNT", count])
        return x(command, _entries)

    def xlen(name):
        return x(["XLEN", name], None)

    def xdel(name, *ids):
        return x(["XDEL", name, *ids], None)

    def xtrim(name, maxlen=None, approximate=True, minid=None, limit=None):
        if (maxlen is None) == (minid is None):
            raise _DataError("Only one of ``maxlen`` or ``minid`` may be specified")
        command = ["XTRIM", name, "MAXLEN" if maxlen is not None else "MINID"]
        command += (["~"] if approximate else []) + [maxlen if maxlen is not None else minid]
        if limit is not None:
            command += ["LIMIT", limit]
        return x(command, None)

    def xread(streams, count=None, block=None):
        if not isinstance(streams, dict) or not streams:
            raise _DataError("XREAD streams must be a non empty dict")
        command = ["XREAD"]
        if block is not None:
            command += ["BLOCK", block]  # refused by the host: it would hold the shared connection
        if count is not None:
            command += ["COUNT", count]
        command += ["STREAMS", *streams.keys(), *streams.values()]
        return x(command, _xread)

    def json():
        return types.SimpleNamespace(**_json_commands(x))

    def ft(index_name="idx"):
        def search(query, query_params=None):
            if not isinstance(query, str):
                raise _DataError("sandboxed search takes the query as a string")
            command = ["FT.SEARCH", index_name, query]
            if query_params:
                command += ["PARAMS", 2 * len(query_params)]
                for pair in query_params.items():
                    command += pair
                command += ["DIALECT", 2]
            return x(command, _search_result)

        return types.SimpleNamespace(search=search)

    methods = {name: fn for name, fn in locals().items() if callable(fn) and name != "x" and not name.startswith("_")}
    methods.update(incrby=incr, decrby=decr)
    return methods


def _json_commands(x):
    """redis-py's r.json() methods (RedisJSON), sending through `x`."""

    def set(name, path, obj, nx=False, xx=False, decode_keys=False):
        if nx and xx:
            raise Exception("nx and xx are mutually exclusive: use one, the other or neither - but not both")
        return x(["JSON.SET", name, path, _json_text(obj), *_flags(NX=nx, XX=xx)], None)

    def get(name, *args, no_escapes=False):
        return x(["JSON.GET", name, *(args or ["."])], None)

    def delete(key, path="."):
        return x(["JSON.DEL", key, path], None)

    def forget(key, path="."):
        return x(["JSON.FORGET", key, path], None)

    def mget(keys, path):
        return x(["JSON.MGET", *keys, path], None)

    def mset(triplets):
        command = ["JSON.MSET"]
        for key, path, obj in triplets:
            command += [key, path, _json_text(obj)]
        return x(command, None)

    def numincrby(name, path, number):
        return x(["JSON.NUMINCRBY", name, path, _json_text(number)], None)

    def nummultby(name, path, number):
        return x(["JSON.NUMMULTBY", name, path, _json_text(number)], None)

    def strappend(name, value, path="."):
        return x(["JSON.STRAPPEND", name, path, _json_text(value)], None)

    def strlen(name, path=None):
        return x(["JSON.STRLEN", name] + ([] if path is None else [path]), None)

    def arrappend(name, path=".", *args):
        return x(["JSON.ARRAPPEND", name, path, *[_json_text(a) for a in args]], None)

    def arrinsert(name, path, index, *args):
        return x(["JSON.ARRINSERT", name, path, index, *[_json_text(a) for a in args]], None)

    def arrlen(name, path=None):
        return x(["JSON.ARRLEN", name] + ([] if path is None else [path]), None)

    def arrpop(name, path=".", index=-1):
        return x(["JSON.ARRPOP", name, path, index], None)

    def arrindex(name, path, scalar, start=None, stop=None):
        command = ["JSON.ARRINDEX", name, path, _json_text(scalar)]
        if start is not None:
            command.append(start)
            if stop is not None:
                command.append(stop)
        return x(command, None)

    def arrtrim(name, path, start, stop):
        return x(["JSON.ARRTRIM", name, path, start, stop], None)

    def objkeys(name, path="."):
        return x(["JSON.OBJKEYS", name, path], None)

    def objlen(name, path="."):
        return x(["JSON.OBJLEN", name, path], None)

    def type(name, path=None):
        return x(["JSON.TYPE", name] + ([] if path is None else [path]), None)

    def toggle(name, path="."):
        return x(["JSON.TOGGLE", name, path], None)

    def clear(name, path="."):
        return x(["JSON.CLEAR", name, path], None)

    return {name: fn for name, fn in locals().items() if callable(fn) and name != "x"}

