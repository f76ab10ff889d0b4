"""Documents of real prose for self-supervised pairs: :class:`Document` and the Python documentation reader.

A :class:`Document` is a title and its paragraphs of clean text, in reading order. :func:`read_python_docs` turns the
HTML pages of the Python documentation, as Debian packages it, into documents, one per page::

    apt-get install python3.11-doc        # or python3-doc; any python3.X-doc works

installs about 530 HTML pages under ``/usr/share/doc/python3.11/html`` (Python Software Foundation License; the
licence is ``/usr/share/doc/python3.11-doc/copyright`` and the ``license.html`` page). :func:`python_docs_dir` finds
that folder. The markup is stripped with the standard library's :class:`html.parser.HTMLParser`: Sphinx writes
well-formed HTML, so a small event parser that keeps a stack of open elements is enough, and the reader needs no
dependency beyond Python itself (BeautifulSoup is not installed with this package).

What is kept, in order: the text of every ``<p>`` element inside the page's main body (``div[role=main]``), inline
markup (code names, links, emphasis) as plain text, whitespace collapsed. What is left out: the page's navigation and
sidebars, headings (the first ``<h1>`` becomes the title), code blocks (``<pre>``), API signatures (``<dt>``),
tables, footnotes and footnote markers, the pilcrow links, and Sphinx's boilerplate paragraphs (note titles such as
"Note" and "See also", "rubric" headings, "Availability: ..." and "Raises an auditing event ..." lines, bare "New in
version 3.4." notes and "Source code: Lib/x.py" lines).

Example::

    from sbert_align.data.corpus import read_python_docs

    documents = read_python_docs()            # after apt-get install python3.11-doc
    print(len(documents), documents[0].title, documents[0].paragraphs[0][:80])
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

__all__ = [
    "Document",
    "html_to_document",
    "python_docs_dir",
    "read_python_docs",
    "PYTHON_DOCS_EXCLUDE",
    "save_documents",
    "load_documents",
]

#: Pages of the Python documentation that are not prose: indexes, tables of contents, search, the changelog (a
#: release log of one-line bug-fix entries) and the licence. Matched against the page's path relative to the root,
#: without ``.html``, with :func:`fnmatch.fnmatch`.
PYTHON_DOCS_EXCLUDE: tuple[str, ...] = (
    "genindex*",
    "py-modindex",
    "search",
    "contents",
    "index",
    "*/index",
    "download",
    "copyright",
    "license",
    "whatsnew/changelog",
)

_SKIP_TAGS = frozenset({"pre", "script", "style", "table", "dt", "head", "nav", "h1", "h2", "h3", "h4", "h5", "h6"})
_SKIP_CLASSES = frozenset(
    {
        "headerlink",
        "admonition-title",
        "rubric",
        "topic-title",
        "sidebar-title",
        "caption",
        "audit-hook",
        "availability",
        "attribution",
        "biglink",
        "footnote",
        "footnote-list",
        "footnote-reference",
        "fn-bracket",
        "highlight",
    }
)
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
_BOILERPLATE = re.compile(
    r"^(?:(?:New in version|Changed in version|Deprecated since version) [\d.]+\.?|Source code: \S+)$"
)
_SPACE = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text.replace("\u00b6", "")).strip()


@dataclass(frozen=True)
class Document:
    """A document: an id, a title and its paragraphs of clean text, in reading order.

    Args:
        id: Where it came from (e.g. ``"library/textwrap"``); unique within a corpus.
        title: The title (may be empty).
        paragraphs: The paragraphs, each one line of plain text.

    Example:
        ::

            from sbert_align.data.corpus import Document

            doc = Document("notes/1", "Rivers", ("Rivers flow to the sea. Most are fresh water.", "Some dry up."))
            print(doc.text)
    """

    id: str
    title: str = ""
    paragraphs: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paragraphs", tuple(self.paragraphs))
        for i, p in enumerate(self.paragraphs):
            if not isinstance(p, str):
                raise ValueError(f"Document {self.id!r}: paragraph {i} is a {type(p).__name__}, expected str.")

    @property
    def text(self) -> str:
        """The paragraphs joined by blank lines."""
        return "\n\n".join(self.paragraphs)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "title": self.title, "paragraphs": list(self.paragraphs)}


class _MainTextParser(HTMLParser):
    """Collects the title and the ``<p>`` paragraphs of a Sphinx page's main body (see the module docstring)."""

    def __init__(self, whole_page: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skips its content, opens the main body)
        self.in_main = whole_page
        self.skip_depth = 0
        self.title_parts: list[str] | None = None
        self.title = ""
        self.paragraph: list[str] | None = None
        self.paragraph_depth = 0
        self.paragraphs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            return
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        opens_main = not self.in_main and attributes.get("role") == "main"
        if opens_main:
            self.in_main = True
        is_title = self.in_main and tag == "h1" and not self.title and self.title_parts is None and not self.skip_depth
        skips = tag in _SKIP_TAGS or bool(classes & _SKIP_CLASSES)
        self.stack.append((tag, skips, opens_main))
        if is_title:
            self.title_parts = []
        if skips:
            self.skip_depth += 1
        if self.in_main and tag == "p" and not self.skip_depth and self.paragraph is None:
            self.paragraph = []
            self.paragraph_depth = len(self.stack)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and self.paragraph is not None:
            self.paragraph.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS or not any(t == tag for t, _, _ in self.stack):
            return  # a stray end tag: ignore it
        while self.stack:
            open_tag, skips, opens_main = self.stack.pop()
            depth = len(self.stack) + 1
            if skips:
                self.skip_depth -= 1
            if opens_main:
                self.in_main = False
            if self.paragraph is not None and depth == self.paragraph_depth:
                self._end_paragraph()
            if open_tag == "h1" and self.title_parts is not None:
                self.title = _clean("".join(self.title_parts))
                self.title_parts = None
            if open_tag == tag:
                return

    def handle_data(self, data: str) -> None:
        if self.title_parts is not None and self.skip_depth == 1:
            self.title_parts.append(data)  # inside the <h1> (itself skipped for paragraphs), not its pilcrow link
        if self.paragraph is not None and not self.skip_depth:
            self.paragraph.append(data)

    def _end_paragraph(self) -> None:
        text = _clean("".join(self.paragraph or []))
        self.paragraph = None
        if text and not _BOILERPLATE.match(text):
            self.paragraphs.append(text)

    def close(self) -> None:
        super().close()
        if self.paragraph is not None:
            self._end_paragraph()


def html_to_document(html: str, doc_id: str, *, main_only: bool = True) -> Document:
    """One HTML page as a :class:`Document`: its first ``<h1>`` as the title, its ``<p>`` paragraphs as clean text.

    Args:
        html: The page.
        doc_id: The document's id.
        main_only: Read only the element with ``role="main"`` (Sphinx's body; navigation and sidebars are left out).
            When the page has no such element, nothing is read; pass ``False`` to read the whole page.

    Returns:
        The document (no paragraphs when the page has no prose).

    Example:
        ::

            from sbert_align.data.corpus import html_to_document

            page = '<div role="main"><h1>Bisect</h1><p>Keeps a list <em>sorted</em>.</p><pre>x = 1</pre></div>'
            doc = html_to_document(page, "bisect")
            assert doc.title == "Bisect" and doc.paragraphs == ("Keeps a list sorted.",)
    """
    parser = _MainTextParser(whole_page=not main_only)
    parser.feed(html)
    parser.close()
    return Document(doc_id, parser.title, tuple(parser.paragraphs))


def python_docs_dir(version: str | None = None) -> Path:
    """The folder of the Python documentation's HTML pages installed by Debian's ``python3.X-doc`` package.

    Looks for ``/usr/share/doc/python3.X/html`` (``version`` such as ``"3.11"``; None takes the newest installed).

    Raises:
        FileNotFoundError: no such folder, with the command that installs it.
    """
    root = Path("/usr/share/doc")
    if version is not None:
        candidates = [root / f"python{version}" / "html"]
    else:
        found = [p for p in root.glob("python3.*/html") if (p / "library").is_dir()]
        candidates = sorted(found, key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p.parent.name)))[::-1]
    for path in candidates:
        if (path / "library").is_dir():
            return path
    wanted = f"python{version}-doc" if version else "python3-doc (or python3.X-doc)"
    raise FileNotFoundError(
        f"The Python documentation is not installed (looked for {', '.join(map(str, candidates)) or root / 'python3.*/html'}"
        f"). Install it with: apt-get install {wanted}"
    )


def _page_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def read_python_docs(
    path: str | os.PathLike | None = None,
    *,
    sections: Sequence[str] | None = None,
    exclude: Iterable[str] = PYTHON_DOCS_EXCLUDE,
    min_paragraphs: int = 1,
) -> list[Document]:
    """The pages of the Python documentation as :class:`Document` objects, one per page, sorted by id.

    Args:
        path: The HTML folder (``.../html``); None finds the installed one (:func:`python_docs_dir`).
        sections: Keep only pages under these top folders (e.g. ``("library", "tutorial")``); None keeps all.
        exclude: Page ids (path without ``.html``) left out, as :func:`fnmatch.fnmatch` patterns;
            :data:`PYTHON_DOCS_EXCLUDE` by default. Folders starting with ``_`` (sources, static files) are never read.
        min_paragraphs: Pages with fewer paragraphs are left out.

    Returns:
        The documents; ``Document.id`` is the page's path without ``.html`` (``"library/textwrap"``).

    Raises:
        FileNotFoundError: no documentation at ``path`` (or none installed), with the install command.
        ValueError: no page left, or a bad ``min_paragraphs``.

    Example:
        ::

            from sbert_align.data.corpus import read_python_docs

            documents = read_python_docs(sections=("tutorial",))   # apt-get install python3.11-doc first
            print(len(documents), sum(len(d.paragraphs) for d in documents))
    """
    from fnmatch import fnmatch

    if isinstance(min_paragraphs, bool) or not isinstance(min_paragraphs, int) or min_paragraphs < 0:
        raise ValueError(f"min_paragraphs must be an integer >= 0, got {min_paragraphs!r}.")
    root = python_docs_dir() if path is None else Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such folder. Install the Python documentation with: apt-get install python3-doc "
            "(its pages are then under /usr/share/doc/python3.X/html)."
        )
    patterns = list(exclude)
    documents = []
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root)
        if any(part.startswith("_") for part in rel.parts):
            continue
        doc_id = _page_id(page, root)
        if sections is not None and rel.parts[0] not in sections:
            continue
        if any(fnmatch(doc_id, p) for p in patterns):
            continue
        doc = html_to_document(page.read_text(encoding="utf-8", errors="replace"), doc_id)
        if len(doc.paragraphs) >= max(min_paragraphs, 1):
            documents.append(doc)
    if not documents:
        raise ValueError(f"{root}: no page with at least {max(min_paragraphs, 1)} paragraph(s) was found.")
    return documents


def save_documents(documents: Iterable[Document], path: str | os.PathLike) -> Path:
    """Write documents as JSON lines (``{"id", "title", "paragraphs"}`` per line), atomically."""
    from ..files import atomic_write_text

    lines = [json.dumps(d.to_dict(), ensure_ascii=False) for d in documents]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def load_documents(path: str | os.PathLike) -> list[Document]:
    """Read what :func:`save_documents` wrote.

    Raises:
        ValueError: a line that is not a document object, naming the file and line.
    """
    documents = []
    path = Path(path)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            documents.append(Document(str(row["id"]), str(row.get("title", "")), tuple(row["paragraphs"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}, line {n}: expected {{'id', 'title', 'paragraphs'}}, got an error: {exc}"
            ) from None
    return documents
