#!/usr/bin/env python3
"""Validate the semantic-cache evaluation sets next to this file.

    python3 vector/eval/check.py

Checks paraphrases.jsonl and structured.jsonl, the held-out set written after the guard
was tuned (heldout-paraphrases.jsonl, heldout-structured.jsonl) and the fresh set written after
the second tuning (fresh-paraphrases.jsonl, fresh-structured.jsonl), and the blind set of
issue 20 (blind-paraphrases.jsonl, blind-structured.jsonl): every line parses, the
schema and ids, kind/same consistency, a != b, no duplicate pairs (in either order; a held-out
pair must not repeat a pair of the tuning files, and a fresh or blind pair must not repeat a pair
of any other file), word counts of the free-text queries, the fields per operation (a held-out or fresh
operation must exist in structured.jsonl, with the same fields), and the per-kind minimum
counts. Prints the counts and a wording-closeness summary per kind; exits 1 on any problem.
"""

import collections
import difflib
import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent

DOMAINS = {
    "support",
    "inventory",
    "blog",
    "url_shortener",
    "billing",
    "shipping",
    "account",
    "scheduling",
}
# kind -> the only `same` value it may carry
KINDS = {
    "paraphrase": True,
    "negation": False,
    "swapped_entities": False,
    "different_number": False,
    "different_entity": False,
    "topic_shift": False,
}
TEXT_MIN = {
    "paraphrase": 150,
    "negation": 50,
    "swapped_entities": 40,
    "different_number": 50,
    "different_entity": 30,
    "topic_shift": 40,
}
TEXT_MIN_TOTAL = 360
STRUCT_MIN = {
    "paraphrase": 40,
    "negation": 8,
    "swapped_entities": 8,
    "different_number": 8,
    "different_entity": 8,
    "topic_shift": 8,
}
STRUCT_MIN_TOTAL = 120
# held-out set (ids h…/g…), written after the guard was tuned
HELDOUT_TEXT_MIN = {
    "paraphrase": 90,
    "negation": 24,
    "swapped_entities": 24,
    "different_number": 24,
    "different_entity": 24,
    "topic_shift": 24,
}
HELDOUT_TEXT_MIN_TOTAL = 220
HELDOUT_STRUCT_MIN = {"paraphrase": 25}
HELDOUT_STRUCT_MIN_TOTAL = 80
# fresh set (ids f…/e…), written after the second tuning: same minimums as the held-out set
FRESH_TEXT_MIN = dict(HELDOUT_TEXT_MIN)
FRESH_TEXT_MIN_TOTAL = HELDOUT_TEXT_MIN_TOTAL
FRESH_STRUCT_MIN = dict(HELDOUT_STRUCT_MIN)
FRESH_STRUCT_MIN_TOTAL = HELDOUT_STRUCT_MIN_TOTAL
# blind set (ids b…/c…, issue 20): written and frozen before any tuning toward
# the error bound; minimums over both files together
BLIND_PARAPHRASES_MIN = 500
BLIND_NEAR_MISSES_MIN = 1000
BLIND_KIND_MIN = 150  # each near-miss kind
# multilingual set (ids m…, issue 20): requests in 8 other languages, and
# English requests against their translation (kind other_language: an answer
# cached in English does not answer a request in another language)
LANGS = {"de", "fr", "es", "it", "pt", "nl", "pl", "ja"}
ML_PER_KIND = {
    "paraphrase": 20,
    "negation": 6,
    "swapped_entities": 6,
    "different_number": 6,
    "different_entity": 6,
    "topic_shift": 6,
    "other_language": 6,
}
ML_KEYS = {"id", "lang", "domain", "a", "b", "same", "kind"}
TEXT_KEYS = {"id", "domain", "a", "b", "same", "kind"}
STRUCT_KEYS = {"id", "operation", "a", "b", "same", "kind"}
MIN_WORDS, MAX_WORDS = 5, 40

problems = []


def problem(msg):
    problems.append(msg)


def load(path, id_re, keys, kinds=KINDS):
    rows = []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problem(f"{path.name}: not UTF-8 ({e})")
        return rows
    if text and not text.endswith("\n"):
        problem(f"{path.name}: last line has no trailing newline")
    seen_ids = set()
    for n, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        where = f"{path.name}:{n}"
        if not line.strip():
            problem(f"{where}: blank line")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problem(f"{where}: does not parse: {e}")
            continue
        if not isinstance(row, dict):
            problem(f"{where}: not a JSON object")
            continue
        if set(row) != keys:
            problem(f"{where}: keys {sorted(row)} != {sorted(keys)}")
            continue
        rid = row["id"]
        if not isinstance(rid, str) or not re.fullmatch(id_re, rid):
            problem(f"{where}: bad id {rid!r}")
        elif rid in seen_ids:
            problem(f"{where}: duplicate id {rid}")
        seen_ids.add(rid)
        kind = row["kind"]
        if kind not in kinds:
            problem(f"{where}: unknown kind {kind!r}")
        elif row["same"] is not kinds[kind]:
            problem(f"{where}: kind {kind} must have same={kinds[kind]}, has {row['same']!r}")
        if row["a"] == row["b"]:
            problem(f"{where}: a == b")
        row["_where"] = where
        rows.append(row)
    return rows


def canon(value):
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def pair_key(row):
    return frozenset([canon(row["a"]), canon(row["b"])])


def check_duplicates(rows, name):
    seen = {}
    for row in rows:
        key = pair_key(row)
        if key in seen:
            problem(f"{row['_where']}: same pair as {seen[key]} ({name})")
        else:
            seen[key] = row["id"]


def check_not_in(rows, others, name):
    """A pair of `rows` must not repeat a pair of the other file `name` (either order)."""
    seen = {pair_key(r): r["id"] for r in others}
    for row in rows:
        key = pair_key(row)
        if key in seen:
            problem(f"{row['_where']}: same pair as {seen[key]} ({name})")


def check_counts(rows, minimums, total, name):
    counts = collections.Counter(r["kind"] for r in rows)
    for kind, low in minimums.items():
        if counts[kind] < low:
            problem(f"{name}: {counts[kind]} pairs of kind {kind}, at least {low} required")
    if len(rows) < total:
        problem(f"{name}: {len(rows)} pairs, at least {total} required")
    return counts


def closeness(a, b):
    """Word-level similarity in [0, 1] (difflib ratio on lowercase word sequences)."""
    wa, wb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    return difflib.SequenceMatcher(None, wa, wb).ratio()


def flatten_text(value):
    if isinstance(value, dict):
        return " ".join(flatten_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(flatten_text(v) for v in value)
    return str(value)


def check_text(path, id_re):
    text = load(path, id_re, TEXT_KEYS)
    for row in text:
        if row["domain"] not in DOMAINS:
            problem(f"{row['_where']}: unknown domain {row['domain']!r}")
        for side in ("a", "b"):
            value = row[side]
            if not isinstance(value, str) or value != value.strip() or not value:
                problem(f"{row['_where']}: {side} must be a non-empty trimmed string")
                continue
            words = len(value.split())
            if not MIN_WORDS <= words <= MAX_WORDS:
                problem(f"{row['_where']}: {side} has {words} words ({MIN_WORDS}-{MAX_WORDS} allowed)")
    check_duplicates(text, path.name)
    return text


def check_struct(path, id_re, shapes, known_ops=None):
    """`shapes` maps an operation to (its fields, the id that set them), shared across files;
    with `known_ops`, an operation must be one of those."""
    struct = load(path, id_re, STRUCT_KEYS)
    for row in struct:
        op = row["operation"]
        if not isinstance(op, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", op):
            problem(f"{row['_where']}: bad operation {op!r}")
            continue
        if known_ops is not None and op not in known_ops:
            problem(f"{row['_where']}: operation {op!r} does not occur in structured.jsonl")
        a, b = row["a"], row["b"]
        if not isinstance(a, dict) or not isinstance(b, dict) or not a or not b:
            problem(f"{row['_where']}: a and b must be non-empty JSON objects")
            continue
        if set(a) != set(b):
            problem(f"{row['_where']}: a and b have different fields {sorted(a)} / {sorted(b)}")
        shape = shapes.setdefault(op, (set(a), row["id"]))
        if set(a) != shape[0]:
            problem(f"{row['_where']}: {op} fields {sorted(a)} differ from {shape[1]}'s {sorted(shape[0])}")
        if row["kind"] == "paraphrase":
            # a paraphrase rewords free text and keeps every exact (non-string) field
            if not any(isinstance(a[k], str) and a[k] != b.get(k) for k in a):
                problem(f"{row['_where']}: paraphrase without a reworded text field")
            for k in a:
                if not isinstance(a[k], str) and a[k] != b.get(k):
                    problem(f"{row['_where']}: paraphrase changes the exact field {k!r}")
    check_duplicates(struct, path.name)
    return struct


def report_text(name, text, counts):
    print(f"{name}: {len(text)} pairs, same=true {sum(r['same'] for r in text)}")
    for kind in KINDS:
        sims = [closeness(r["a"], r["b"]) for r in text if r["kind"] == kind]
        mean = sum(sims) / len(sims) if sims else 0.0
        print(f"  {kind:17} {counts[kind]:4}   word overlap (difflib) mean {mean:.2f}")
    domains = collections.Counter(r["domain"] for r in text)
    print("  domains: " + ", ".join(f"{d} {domains[d]}" for d in sorted(domains)))


def report_struct(name, struct, counts):
    print(f"{name}: {len(struct)} pairs, same=true {sum(r['same'] for r in struct)}")
    for kind in KINDS:
        sims = [
            closeness(flatten_text(r["a"]), flatten_text(r["b"]))
            for r in struct
            if r["kind"] == kind
        ]
        mean = sum(sims) / len(sims) if sims else 0.0
        print(f"  {kind:17} {counts[kind]:4}   word overlap (difflib) mean {mean:.2f}")
    ops = collections.Counter(r["operation"] for r in struct)
    print("  operations: " + ", ".join(f"{o} {ops[o]}" for o in sorted(ops)))


def check_multilingual(path):
    """The multilingual set: per language exactly the counts of ML_PER_KIND, the
    domains known, `other_language` pairs only with `same` false."""
    kinds = dict(KINDS, other_language=False)
    rows = []
    for row in load(path, r"m\d{4}", ML_KEYS, kinds):
        if row["lang"] not in LANGS:
            problem(f"{row['_where']}: unknown lang {row['lang']!r}")
        if row["domain"] not in DOMAINS:
            problem(f"{row['_where']}: unknown domain {row['domain']!r}")
        rows.append(row)
    check_duplicates(rows, path.name)
    counts = collections.Counter((r["lang"], r["kind"]) for r in rows)
    for lang in sorted(LANGS):
        for kind, n in ML_PER_KIND.items():
            if counts[(lang, kind)] != n:
                problem(f"{path.name}: {counts[(lang, kind)]} {lang} pairs of kind {kind}, {n} expected")
    return rows


def main():
    text = check_text(HERE / "paraphrases.jsonl", r"p\d{4}")
    text_counts = check_counts(text, TEXT_MIN, TEXT_MIN_TOTAL, "paraphrases.jsonl")

    shapes = {}
    struct = check_struct(HERE / "structured.jsonl", r"s\d{4}", shapes)
    struct_counts = check_counts(struct, STRUCT_MIN, STRUCT_MIN_TOTAL, "structured.jsonl")

    # held-out set: same checks, own ids and minimums, no pair shared with the tuning files
    h_text = check_text(HERE / "heldout-paraphrases.jsonl", r"h\d{4}")
    check_not_in(h_text, text, "paraphrases.jsonl")
    h_text_counts = check_counts(
        h_text, HELDOUT_TEXT_MIN, HELDOUT_TEXT_MIN_TOTAL, "heldout-paraphrases.jsonl"
    )
    known_ops = {r["operation"] for r in struct}
    h_struct = check_struct(HERE / "heldout-structured.jsonl", r"g\d{4}", shapes, known_ops)
    check_not_in(h_struct, struct, "structured.jsonl")
    h_struct_counts = check_counts(
        h_struct, HELDOUT_STRUCT_MIN, HELDOUT_STRUCT_MIN_TOTAL, "heldout-structured.jsonl"
    )

    # fresh set: same checks, own ids and minimums, no pair shared with any other file
    f_text = check_text(HERE / "fresh-paraphrases.jsonl", r"f\d{4}")
    f_struct = check_struct(HERE / "fresh-structured.jsonl", r"e\d{4}", shapes, known_ops)
    for fresh in (f_text, f_struct):
        for others, name in (
            (text, "paraphrases.jsonl"),
            (struct, "structured.jsonl"),
            (h_text, "heldout-paraphrases.jsonl"),
            (h_struct, "heldout-structured.jsonl"),
        ):
            check_not_in(fresh, others, name)
    check_not_in(f_struct, f_text, "fresh-paraphrases.jsonl")
    f_text_counts = check_counts(
        f_text, FRESH_TEXT_MIN, FRESH_TEXT_MIN_TOTAL, "fresh-paraphrases.jsonl"
    )
    f_struct_counts = check_counts(
        f_struct, FRESH_STRUCT_MIN, FRESH_STRUCT_MIN_TOTAL, "fresh-structured.jsonl"
    )

    # blind set: same checks, own ids, no pair shared with any other file, and
    # the minimums of issue 20 over its two files together
    b_text = check_text(HERE / "blind-paraphrases.jsonl", r"b\d{4}")
    b_struct = check_struct(HERE / "blind-structured.jsonl", r"c\d{4}", shapes, known_ops)
    for blind in (b_text, b_struct):
        for others, name in (
            (text, "paraphrases.jsonl"),
            (struct, "structured.jsonl"),
            (h_text, "heldout-paraphrases.jsonl"),
            (h_struct, "heldout-structured.jsonl"),
            (f_text, "fresh-paraphrases.jsonl"),
            (f_struct, "fresh-structured.jsonl"),
        ):
            check_not_in(blind, others, name)
    b_text_counts = check_counts(b_text, {}, 0, "blind-paraphrases.jsonl")
    b_struct_counts = check_counts(b_struct, {}, 0, "blind-structured.jsonl")
    both = b_text_counts + b_struct_counts
    paraphrases = both["paraphrase"]
    near = sum(n for k, n in both.items() if k != "paraphrase")
    if paraphrases < BLIND_PARAPHRASES_MIN:
        problem(f"blind set: {paraphrases} paraphrases, needs >= {BLIND_PARAPHRASES_MIN}")
    if near < BLIND_NEAR_MISSES_MIN:
        problem(f"blind set: {near} near-misses, needs >= {BLIND_NEAR_MISSES_MIN}")
    for kind in KINDS:
        if kind != "paraphrase" and both[kind] < BLIND_KIND_MIN:
            problem(f"blind set: {both[kind]} {kind} pairs, needs >= {BLIND_KIND_MIN}")
    if {r["domain"] for r in b_text} != DOMAINS:
        problem(f"blind set: domains {sorted({r['domain'] for r in b_text})}, needs all of {sorted(DOMAINS)}")
    if {r["operation"] for r in b_struct} != known_ops:
        problem(f"blind set: operations {sorted({r['operation'] for r in b_struct})}, needs all of {sorted(known_ops)}")

    # multilingual set: its own schema (a `lang`), no pair shared with any other file
    ml = check_multilingual(HERE / "multilingual.jsonl")
    for others, name in (
        (text, "paraphrases.jsonl"),
        (h_text, "heldout-paraphrases.jsonl"),
        (f_text, "fresh-paraphrases.jsonl"),
        (b_text, "blind-paraphrases.jsonl"),
    ):
        check_not_in(ml, others, name)

    report_text("paraphrases.jsonl", text, text_counts)
    report_struct("structured.jsonl", struct, struct_counts)
    report_text("heldout-paraphrases.jsonl", h_text, h_text_counts)
    report_struct("heldout-structured.jsonl", h_struct, h_struct_counts)
    report_text("fresh-paraphrases.jsonl", f_text, f_text_counts)
    report_struct("fresh-structured.jsonl", f_struct, f_struct_counts)
    report_text("blind-paraphrases.jsonl", b_text, b_text_counts)
    report_struct("blind-structured.jsonl", b_struct, b_struct_counts)
    print(f"blind set: {paraphrases} paraphrases, {near} near-misses")
    print(f"multilingual set: {len(ml)} pairs in {len({r['lang'] for r in ml})} languages")

    if problems:
        for p in problems:
            print("PROBLEM: " + p, file=sys.stderr)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
