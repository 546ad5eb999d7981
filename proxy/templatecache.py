"""Compiled Jinja2 templates kept in memory for the whole process.

``mwm run`` checks every template twice at start-up: once in the CLI, before anything
starts (so a broken override is reported with the settings' problems), and again in the
server it then runs, in the same process.  Compiling a template (parsing it, generating
Python and compiling that) is most of a check's time; with one cache per kind of
environment, the second check, and every environment per language, reuses the code the
first compiled.

Sharing is sound when every environment given the same cache has the same options (so the
same source always compiles to the same code): each user of this module keeps one cache for
the environments it makes alike (:mod:`proxy.pages`, :mod:`proxy.dashboard`).  A template
is keyed by its name and file (Jinja2's bucket key), and its source's checksum is checked on
every load, so a changed file is compiled again.
"""

from __future__ import annotations

import jinja2
import jinja2.bccache


class CompiledTemplates(jinja2.BytecodeCache):
    """A Jinja2 bytecode cache in memory (see the module's docstring for when to share one)."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()
