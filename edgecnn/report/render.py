"""Render the page: the sections' data through one Jinja2 template into one self-contained HTML string.

The template (``templates/report.html.j2``, package data) is rendered with autoescaping on, so every
text from the inputs (class names, recording ids, label maps, paths) reaches the page escaped; the
stylesheet (``templates/report.css``) is inlined and every image is a base64 PNG data URI: no external
resource, no JavaScript. Number formatting lives here, as the template's filters.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from typing import Any

import jinja2
from markupsafe import Markup

from edgecnn.errors import EdgeCNNError
from edgecnn.report.read import ReportInputs
from edgecnn.report.sections import SECTIONS, Missing, cards, header, is_number

TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"


def num(value: Any, digits: int = 4) -> str:
    """A figure as text: integers with thousands separators, floats with ``digits`` decimals, '-' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def size(n: Any) -> str:
    """Bytes for people: B, KiB or MiB."""
    if not is_number(n):
        return "-"
    for unit, factor in (("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{int(n):,} B"


def pct(value: Any, digits: int = 1) -> str:
    """A share (0..1) as a percentage; tiny non-zero shares as '< 0.1 %'."""
    if not is_number(value):
        return "-"
    if 0 < value < 10 ** -(digits + 2):
        return f"< {10 ** -digits:g} %"
    return f"{100 * value:.{digits}f} %"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def dash(value: Any) -> Any:
    """A text value, or '-' where there is none."""
    return "-" if value is None or value == "" else value


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_NUMERIC = re.compile(r"^[-+<]?\s?\d[\d,.]*(\s?(/|of|x|%|B|KiB|MiB|MB|\(|×)|$)")


def looks_numeric(text: Any) -> bool:
    """Figures (``1,234``, ``-0.5``, ``12.3 %``, ``3 / 4 B``) right-align in key/value tables; names do not."""
    return bool(_NUMERIC.match(str(text)))


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment: the package's templates, autoescaping on, the number filters."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("edgecnn.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, size=size, pct=pct, plural=plural, dash=dash, data_uri=data_uri)
    env.tests["numeric"] = looks_numeric
    env.globals["section_macro"] = _section_macro
    return env


@jinja2.pass_context
def _section_macro(context: jinja2.runtime.Context, ident: str) -> jinja2.runtime.Macro:
    """The template's macro ``section_<ident>`` (a section's layout), by the section's id."""
    found = context.resolve_or_missing(f"section_{ident}")
    if found is jinja2.runtime.missing:
        raise EdgeCNNError(f"report template {TEMPLATE} has no macro section_{ident} for section {ident!r}")
    return found



def render_html(inputs: ReportInputs) -> str:
    """The whole report as one self-contained HTML document (pure: no file or network access)."""
    from edgecnn import __version__

    env = environment()
    sections = []
    for section in SECTIONS:
        content = section.data(inputs)
        if content is not None:
            sections.append({"id": section.id, "title": section.title, "nav": section.nav,
                             "missing": content if isinstance(content, Missing) else None, "data": content})
    css = env.loader.get_source(env, STYLESHEET)[0]
    page = env.get_template(TEMPLATE).render(
        css=Markup(css), header=header(inputs), cards=cards(inputs), sections=sections, version=__version__)
    return page.lstrip() + "\n"  # the macro definitions above the page leave blank lines
