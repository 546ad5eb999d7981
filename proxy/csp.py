"""The ``Content-Security-Policy`` of an HTML page, from the page itself.

Pages are rendered ahead of time, so the policy allows their inline ``<script>`` and
``<style>`` elements by hash (CSP Level 2 ``'sha256-...'`` sources) rather than by a
per-request nonce.  The hashes are computed from the rendered page, so an operator's
override template with an inline script or style of its own keeps working; an external
script, stylesheet or image from another origin, a ``style=""`` attribute or an inline
event handler (``onclick=""``) is blocked, as it should be on a page served while the site
is down.

Elements are found with a regular expression over the output, the way a browser's
tokenizer ends them: an element's text runs to the first ``</script`` (or ``</style``),
whatever the case.  A ``<script src=...>`` has no inline text to hash; ``default-src
'none'`` refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import re

_INLINE = re.compile(r"<(script|style)\b([^>]*)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_SRC = re.compile(r"\bsrc\s*=", re.IGNORECASE)
_NONE = "'none'"

FIXED = (
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "frame-ancestors 'none'",
)
"""The directives every page gets besides ``default-src``, ``script-src``, ``style-src`` and
``form-action``."""


def source_hash(text: str) -> str:
    """``'sha256-<base64>'``: the CSP source allowing an inline element whose text is ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def inline_hashes(html: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(script hashes, style hashes)`` of the inline elements of ``html``, each once, in
    order of appearance."""
    scripts: dict[str, None] = {}
    styles: dict[str, None] = {}
    for match in _INLINE.finditer(html):
        kind, attributes, text = match.groups()
        if kind.lower() == "script":
            if not _SRC.search(attributes):
                scripts[source_hash(text)] = None
        else:
            styles[source_hash(text)] = None
    return tuple(scripts), tuple(styles)


def policy_for(html: str, *, form_action: str = _NONE) -> str:
    """The whole ``Content-Security-Policy`` header value for the page ``html``.

    ``form_action``: where the page's forms may submit; nowhere for the public pages (they
    have no form), ``'self'`` for the dashboard."""
    scripts, styles = inline_hashes(html)
    directives = (
        f"default-src {_NONE}",
        f"script-src {' '.join(scripts) or _NONE}",
        f"style-src {' '.join(styles) or _NONE}",
        f"form-action {form_action}",
        *FIXED,
    )
    return "; ".join(directives)
