"""The requirements of docs/PROTOCOL.md, and the @rule decorator that ties a
case to one of them.

A requirement is a sentence that carries **must** or **must not** in bold
(the key words of the spec's Conventions). The spec is split into blocks —
paragraphs, list items and table rows (code blocks are skipped) — whose
wrapped lines are joined, and a block into sentences at a full stop, colon
or semicolon followed by a space and a capital letter, a backtick or a star;
a table row is one sentence. A case cites its requirement by quoting part of
it; the quote must occur in exactly one requirement sentence (whitespace
compared loosely), so editing a sentence breaks the cases that cite it.
"""
import ast
import glob
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "docs", "PROTOCOL.md")
KEYWORD = re.compile(r"\*\*must( not)?\*\*")


def rule(*quotes):
    """Marks a case as checking the requirement sentences quoted."""
    def mark(fn):
        fn.rules = quotes
        return fn
    return mark


def _norm(text):
    return re.sub(r"\s+", " ", text).strip()


def blocks(text):
    """Paragraphs, list items and table rows of a markdown text, each joined
    into one line; fenced code is left out. Yields (line number, text)."""
    out, cur, start, fenced = [], [], 0, False

    def flush():
        if cur:
            out.append((start, _norm(" ".join(cur))))
            cur.clear()

    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("```"):
            flush()
            fenced = not fenced
            continue
        if fenced:
            continue
        if not s:
            flush()
            continue
        if s.startswith("|"):
            flush()
            out.append((no, _norm(s)))
            continue
        if s.startswith("#") or re.match(r"^([*-]|\d+\.)\s", s):
            flush()
        if not cur:
            start = no
        cur.append(s)
    flush()
    return out


SPLIT = re.compile(r"(?<=[.;:])\s+(?=[A-Z`*(])")


def requirements(path=SPEC):
    """Every requirement sentence: (line, sentence)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = []
    for no, block in blocks(text):
        parts = [block] if block.startswith("|") else SPLIT.split(block)
        for p in parts:
            if KEYWORD.search(p):
                found.append((no, p))
    return found


def _plain(s):
    return _norm(s.replace("**", "").replace("`", ""))


def matches(quote, reqs):
    q = _plain(quote)
    return [r for r in reqs if q in _plain(r[1])]


def cited_quotes():
    """Every quote given to @rule in the suite's test files: (file, line, quote)."""
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "rule":
                    for a in d.args:
                        if isinstance(a, ast.Constant) and isinstance(a.value, str):
                            out.append((os.path.basename(path), node.name, a.value))
    return out


def rejected_examples(path=SPEC):
    """The "why" column of the table of bodies a receiver must reject."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Examples of bodies a receiver **must** reject"))
    out = []
    for l in lines[start + 1:]:
        s = l.strip()
        if not s and out:
            break
        if not s.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|?", s):
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if cells[0] == "body":
            continue
        out.append(cells[-1])
    return out
