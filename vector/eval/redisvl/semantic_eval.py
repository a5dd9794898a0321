"""RedisVL's SemanticCache driven by vector/benches/semantic_eval.rs, one command per line.

The Rust bench starts this script with the venv of `scripts/redisvl-env.sh` and talks to it
over stdin/stdout, one JSON object per line each way, so the two caches run interleaved
in one process tree, against the same Redis, pair after pair.

RedisVL gets the SAME embeddings as EOL: the bench embeds every prompt once with EOL's
MiniLm (all-MiniLM-L6-v2 on candle) and writes `{"dims": N, "vectors": {prompt: [f32; N]}}`
to a file; the vectorizer below (a redisvl `CustomVectorizer`) only looks prompts up in it.
No torch, no sentence-transformers.

Commands (`op`), each answered by one line:

- `init` {redis_url, vectors, name}: open `SemanticCache(name, vectorizer=<lookup>)`
  (overwrite=True, no TTL) -> {"ok": true, "redisvl": version}
- `store` {prompt, answer}: `cache.store(prompt, answer)` (the vector comes from the
  lookup vectorizer) -> {"key": redis key}
- `check` {prompt, threshold}: the prompt's vector is looked up first, then only
  `cache.check(vector=..., distance_threshold=threshold, num_results=1)` is timed with
  `time.perf_counter_ns()` -> {"hit": bool, "answer": str|null, "distance": float|null, "ns": int}
- `drop` {key}: `cache.drop(keys=[key])` -> {"ok": true}
- `close`: `cache.delete()` (the index and its entries) -> {"ok": true}, then exit.

Timings exclude process start-up, imports, the index creation and the vector look-up: only
the `check` call (query building, FT.SEARCH round trip, result parsing) is inside.
"""

import json
import sys
import time

import redisvl
from redisvl.extensions.cache.llm import SemanticCache
from redisvl.utils.vectorize import CustomVectorizer


def main() -> None:
    cache = None
    table: dict[str, list[float]] = {}
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "init":
            with open(cmd["vectors"], encoding="utf-8") as f:
                data = json.load(f)
            table = data["vectors"]

            def embed(text, **_kwargs):
                # KeyError for a prompt the bench did not embed: never a made-up vector.
                return table[text]

            vectorizer = CustomVectorizer(embed=embed)
            cache = SemanticCache(
                name=cmd["name"],
                vectorizer=vectorizer,
                redis_url=cmd["redis_url"],
                overwrite=True,
            )
            reply = {"ok": True, "redisvl": redisvl.__version__, "dims": vectorizer.dims}
        elif op == "store":
            key = cache.store(prompt=cmd["prompt"], response=cmd["answer"])
            reply = {"key": key}
        elif op == "check":
            vector = table[cmd["prompt"]]
            t0 = time.perf_counter_ns()
            hits = cache.check(
                vector=vector, distance_threshold=cmd["threshold"], num_results=1
            )
            ns = time.perf_counter_ns() - t0
            if hits:
                hit = hits[0]
                reply = {
                    "hit": True,
                    "answer": hit.get("response"),
                    "distance": float(hit.get("vector_distance", "nan")),
                    "ns": ns,
                }
            else:
                reply = {"hit": False, "answer": None, "distance": None, "ns": ns}
        elif op == "drop":
            cache.drop(keys=[cmd["key"]])
            reply = {"ok": True}
        elif op == "close":
            if cache is not None:
                cache.delete()
            out.write(json.dumps({"ok": True}) + "\n")
            out.flush()
            return
        else:
            reply = {"error": f"unknown op {op!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
