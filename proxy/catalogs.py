"""Message catalogs: the languages the pages speak.

The templates are written in English (the source language) and mark their texts for
translation (``{{ _("...") }}``, Jinja2's i18n extension).  Translations are gettext
``.po`` files, one per language, under ``locale/<lang>/LC_MESSAGES/messages.po`` of the
built-in template directory; they are compiled in memory with Babel when the process
starts (no ``.mo`` files to keep in step).

An operator's template directory (``MWM_PAGE__TEMPLATE_DIR``) may hold a ``locale/`` of
its own, laid out the same way: a catalog for a language we do not ship adds it, one for a
language we ship overrides the texts it translates (the others stay ours), and an ``en``
catalog rewords the English texts.  The directory name is the language tag, with ``_``
or ``-`` between subtags (``pt_BR``); tags are compared in lower case (``pt-br``).

A catalog that cannot be read is a problem reported by ``mwm check-config`` and logged at
start-up; the pages then speak the languages that remain.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po
from babel.support import NullTranslations, Translations

SOURCE_LANGUAGE = "en"
"""The language the templates are written in; always available, with or without a catalog."""
LOCALE_DIR = "locale"
DOMAIN = "messages"
_ARGUMENT = re.compile(r"%\((\w+)\)")
_TAG = re.compile(r"^[a-z]{2,8}(?:-[a-z0-9]{1,8})*$")


def builtin_template_dir() -> Path:
    """The built-in templates: ``proxy/templates`` in a wheel, ``templates/`` in a checkout."""
    here = Path(__file__).resolve().parent
    installed, checkout = here / "templates", here.parent / "templates"
    if installed.is_dir():
        return installed
    if checkout.is_dir():
        return checkout
    return installed  # missing: PageRenderer.check() says so, and pages use the last-resort body


def language_tag(name: str) -> str | None:
    """``pt_BR`` -> ``pt-br``; None for a name that is no language tag."""
    tag = name.replace("_", "-").lower()
    return tag if _TAG.match(tag) else None


def catalog_files(template_dir: Path | None) -> dict[str, Path]:
    """``{tag: path}`` of the ``messages.po`` files under ``template_dir/locale``."""
    found: dict[str, Path] = {}
    if template_dir is None:
        return found
    root = template_dir / LOCALE_DIR
    if not root.is_dir():
        return found
    for entry in sorted(root.iterdir()):
        tag = language_tag(entry.name)
        po = entry / "LC_MESSAGES" / f"{DOMAIN}.po"
        if tag is not None and po.is_file():
            found[tag] = po
    return found


def available_languages(*template_dirs: Path | None) -> frozenset[str]:
    """Every language a page can be rendered in with these template directories."""
    tags = {SOURCE_LANGUAGE}
    for directory in template_dirs:
        tags.update(catalog_files(directory))
    return frozenset(tags)


@dataclass(frozen=True, slots=True)
class Catalogs:
    """The compiled catalogs, by lower-case language tag."""

    translations: Mapping[str, NullTranslations]
    problems: tuple[str, ...] = ()

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.translations))

    def get(self, tag: str) -> NullTranslations:
        return self.translations.get(tag) or NullTranslations()


def load_catalogs(builtin_dir: Path, override_dir: Path | None = None) -> Catalogs:
    """Compile the built-in catalogs, then merge the operator's over them."""
    problems: list[str] = []
    merged: dict[str, NullTranslations] = {SOURCE_LANGUAGE: NullTranslations()}
    for directory in (builtin_dir, override_dir):
        for tag, po in catalog_files(directory).items():
            try:
                compiled, refused = compile_po(po.read_bytes())
            except (OSError, PoFileError, ValueError) as exc:
                problems.append(f"catalog {po}: {exc}")
                continue
            problems.extend(f"catalog {po}: {problem}" for problem in refused)
            base = merged.get(tag)
            merged[tag] = base.merge(compiled) if isinstance(base, Translations) else compiled
    return Catalogs(translations=merged, problems=tuple(problems))


def compile_po(source: bytes) -> tuple[Translations, list[str]]:
    """A ``.po`` file's text, compiled as ``msgfmt`` would (fuzzy entries left out), and
    the problems of the translations left out because they would fail to render.

    The templates format every translation with its named arguments (``%(status)s``;
    Jinja2's new-style gettext), so a translation naming an argument its text does not
    have, or with a lone ``%``, would turn the page into an error: it is refused here and
    the English text is shown instead.
    """
    catalog = read_po(io.BytesIO(source), locale=None, domain=DOMAIN, abort_invalid=True)
    problems: list[str] = []
    for message in list(catalog):
        if not message.id or not message.string:
            continue
        ids, forms = _texts(message.id), _texts(message.string)
        arguments = {name: 0 for text in ids for name in _ARGUMENT.findall(text)}
        for form in forms:
            try:
                form % arguments  # only whether it formats
            except (KeyError, ValueError, TypeError) as exc:
                problems.append(
                    f"line {message.lineno}: translation of {ids[0]!r} does not format "
                    f"({type(exc).__name__}: {exc}); write %% for a percent sign"
                )
                del catalog[message.id]
                break
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Translations(mo, domain=DOMAIN), problems


def message_ids(po: Path) -> set[str]:
    """The msgids of a ``.po`` file (the catalog's header entry left out)."""
    with po.open("rb") as handle:
        catalog = read_po(handle, abort_invalid=True)
    ids: set[str] = set()
    for message in catalog:
        if not message.id:
            continue  # the header entry
        ids.update(_texts(message.id))
    return ids


def missing_translations(po: Path, wanted: Iterable[str]) -> list[str]:
    """The ``wanted`` texts the catalog at ``po`` has no entry for."""
    have = message_ids(po)
    return sorted(set(wanted) - have)


def _texts(value: object) -> tuple[str, ...]:
    """A message's id or string as a tuple: one text, or the plural forms."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list):
        return tuple(str(text) for text in value)
    return ()
