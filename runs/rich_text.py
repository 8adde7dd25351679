"""The one function that turns user Markdown into HTML a page may show.

Markdown (Python-Markdown) renders first; bleach then keeps only an allowlist of tags,
attributes and URL schemes, so raw HTML in the text, `<script>`, event handlers such as
`onerror=`, `style=` and `javascript:` / `data:` URLs never reach the page. Links (and bare URLs,
which become links) get `rel="nofollow noopener noreferrer"`.
"""

import re
from functools import partial

import bleach
import markdown
from bleach.html5lib_shim import Filter
from bleach.linkifier import LinkifyFilter
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "code",
        "dd",
        "del",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
ALLOWED_ATTRIBUTES = {
    "a": ["href", "title", "rel"],
    "abbr": ["title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["align"],
    "th": ["align"],
}


def _code_class(tag: str, name: str, value: str) -> bool:
    return name == "class" and re.fullmatch(r"language-[\w+#.-]{1,40}", value) is not None


ALLOWED_ATTRIBUTES["code"] = _code_class  # fenced code's "language-…" class, nothing else
# No "data": an image may be a URL or a path, never inline bytes. Relative URLs are kept.
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
REL = "nofollow noopener noreferrer"


def _set_rel(attrs: dict, new: bool = False) -> dict:
    attrs[(None, "rel")] = REL
    return attrs


class _LazyImages(Filter):
    """Images in a description load when scrolled to (a long description may hold many). Runs
    after the allowlist, so the one attribute it adds is the only one not from the text."""

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "img":
                token["data"][(None, "loading")] = "lazy"
            yield token


_cleaner = bleach.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    protocols=ALLOWED_PROTOCOLS,
    strip=True,
    strip_comments=True,
    filters=[
        partial(LinkifyFilter, callbacks=[_set_rel], skip_tags={"pre", "code"}),
        _LazyImages,
    ],
)


def render_markdown(text: str) -> SafeString:
    """Markdown → sanitised HTML, safe to put in a template as is."""
    html = markdown.markdown(
        text or "",
        extensions=["fenced_code", "tables", "sane_lists"],
        extension_configs={"tables": {"use_align_attribute": True}},
        output_format="html",
    )
    return mark_safe(_cleaner.clean(html))  # noqa: S308  (cleaned by the allowlist above)
