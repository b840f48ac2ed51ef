"""The source a page quotes must be in the code: docs/workshop.md's "Read the source"
sections and C-looking code spans of its lessons, and the ```c blocks of docs/scenarios/*.md.

A quote is compared with the code with runs of white space made one space, a
`...` (or `…`) standing for anything on the same statement, and a doc's own
annotation (a trailing `/* (1) ... */` comment, which numbers the steps a page
walks through) ignored. A quote is looked for in the files its section names
(`scenarios/NAME.c`), then in every file under scenarios/ and common/: a page
that names the wrong file still gets a message saying where the line really is.
"""

import re
from dataclasses import dataclass
from pathlib import Path

SPAN_RE = re.compile(r"`([^`\n]+)`")
FILE_RE = re.compile(r"\b((?:scenarios|common)/[\w/.-]+\.[ch])\b")
# A code span that is C, not a name in prose: a call, a member, a comparison, a comment.
C_LIKE = re.compile(r"\(|->|==|!=|&&|\|\||/\*|;")
ANNOTATION = re.compile(r"\s*/\*\s*\(\d+\)[^*]*\*/\s*$")
ELLIPSIS = re.compile(r"\s*(?:\.\.\.|…)\s*")
SOURCE_SUFFIXES = (".c", ".h")


@dataclass
class Quote:
    doc: str       # the page, relative to the repository
    line: int
    text: str      # as the page writes it
    files: tuple   # the files its section names (may be empty)

    def where(self):
        return f"{self.doc}:{self.line}"


def _squash(text):
    return re.sub(r"\s+", " ", text).strip()


MARKER = re.compile(r"/\*\s*([A-Z]+):?\s*\*/")   # `/* FIX: */` names the lines marked so
CALLED = re.compile(r"([A-Za-z_]\w*)\(\)")       # `shutdown()` names the call, whatever its arguments


def pattern(quote_text):
    """A regex for a quote: white space flexible, `...` any text (not across a `;`),
    the page's step annotations dropped, a marker or a call named by its start."""
    text = ANNOTATION.sub("", quote_text).strip()
    marker = MARKER.fullmatch(text)
    if marker:
        return re.compile(r"/\*\s*" + marker.group(1) + r"\b")
    called = CALLED.fullmatch(text)
    if called:
        return re.compile(r"\b" + re.escape(called.group(1)) + r"\s*\(")
    parts = [re.escape(_squash(p)) for p in ELLIPSIS.split(_squash(text))]
    glue = r"[^;]*?"
    body = glue.join(p.replace(r"\ ", r"\s+") for p in parts if p)
    return re.compile(body) if body else None


def sources(repo):
    """{relative path: text} for every C file under scenarios/ and common/."""
    out = {}
    for top in ("scenarios", "common"):
        for p in sorted((repo / top).rglob("*")):
            if p.suffix in SOURCE_SUFFIXES and p.is_file():
                out[str(p.relative_to(repo))] = p.read_text(errors="replace")
    return out


def find(quote, code):
    """(True, file) when the quote is in one of its named files; (False, where
    else it is or None) when not."""
    rx = pattern(quote.text)
    if rx is None:
        return True, None
    for f in quote.files:
        if f in code and rx.search(code[f]):
            return True, f
    if quote.files:
        elsewhere = next((f for f, text in code.items() if rx.search(text)), None)
        return False, elsewhere
    hit = next((f for f, text in code.items() if rx.search(text)), None)
    return hit is not None, hit


def workshop_quotes(text, doc="docs/workshop.md"):
    """The quotes of docs/workshop.md's lessons: every code span of a "### Read the
    source" section (against the files that section names), and every C-looking code
    span elsewhere in a lesson (against all the code)."""
    quotes = []
    in_lesson = in_source = False
    fence = False
    section_files = ()
    section = []   # (line, text) of the current ### section
    lines = text.splitlines()

    def flush():
        for n, line in section:
            for m in SPAN_RE.finditer(line):
                span = m.group(1)
                if FILE_RE.fullmatch(span) or span.startswith(("./", "--")) or "@" in span:
                    continue  # a file, a command, an option, an expected-file expression
                if in_source or C_LIKE.search(span):
                    quotes.append(Quote(doc, n, span, section_files if in_source else ()))
    for n, line in enumerate(lines, 1):
        if line.strip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        if line.startswith("#"):
            if in_lesson:
                flush()
            section = []
            if line.startswith("## "):
                in_lesson = line.startswith("## Lesson ")
            in_source = in_lesson and line.startswith("### Read the source")
            section_files = ()
            continue
        if in_lesson:
            section.append((n, line))
            if in_source:
                section_files += tuple(f for f in FILE_RE.findall(line) if f not in section_files)
    if in_lesson:
        flush()
    return quotes


def c_block_quotes(text, doc):
    """Each line of a ```c block of a scenario page (a `...` line is a gap)."""
    quotes = []
    block = None
    scenario = Path(doc).stem
    files = (f"scenarios/{scenario}.c",)
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("```"):
            block = None if block is not None else s[3:].strip()
            continue
        if block == "c" and s and not ELLIPSIS.fullmatch(s) and s not in ("{", "}"):
            quotes.append(Quote(doc, n, s, files))
    return quotes


def problems(quotes, code):
    """One line per quote that is not in the code it claims."""
    out = []
    for q in quotes:
        ok, where = find(q, code)
        if ok:
            continue
        named = ", ".join(q.files) or "scenarios/ or common/"
        also = f" (it is in {where}: name that file)" if where else ""
        out.append(f"{q.where()}: `{q.text}` is not in {named}{also}")
    return out
