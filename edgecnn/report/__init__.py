"""The HTML report: one self-contained page about a run, its bundle, parity and a stream.

One module per step of the data flow:

- :mod:`.locate`   which files a path stands for (run directory, bundles, stream result);
- :mod:`.read`     reads them into a :class:`ReportInputs` (the bundle verified, device fit checked);
- :mod:`.figures`  draws, in memory, the figures no file holds (the run's PNGs are used as they are);
- :mod:`.sections` one data function per section: ReportInputs in, plain data out (no HTML);
- :mod:`.render`   the sections' data through one Jinja2 template (``templates/report.html.j2``,
  autoescaped, its stylesheet inlined, images as data URIs) into one HTML string.

:func:`collect` reads files and never writes any; :func:`render_html` is pure. No TensorFlow here
(the report reads the files training wrote; it never loads a model), so it works where only the
device side is installed.
"""

from edgecnn.report.figures import plot_state_timelines
from edgecnn.report.locate import Located, locate
from edgecnn.report.read import ReportInputs, collect, fit_checks, model_row
from edgecnn.report.render import num, pct, render_html, size
from edgecnn.report.sections import SECTIONS, Missing, Section

__all__ = ["SECTIONS", "Located", "Missing", "ReportInputs", "Section", "collect", "fit_checks", "locate",
           "model_row", "num", "pct", "plot_state_timelines", "render_html", "size"]
