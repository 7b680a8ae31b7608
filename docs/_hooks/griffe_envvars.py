"""Griffe extension for the API reference: the docstrings are written in reStructuredText habits
(Sphinx roles, ``.. envvar::``), the site in Markdown. So that they read well there:

- the Sphinx ``.. envvar:: NAME`` line that opens each docstring of
  ``apitally_otel.environment_variables`` is dropped (the heading already names the variable);
- a cross-reference role (``:class:`~pkg.mod.Name```, ``:func:`name```, ``:meth:`...```) becomes
  inline code of its target (``Name`` with the ``~``, the full target without it), as Sphinx
  would show it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DIRECTIVE = re.compile(r"^\s*\.\. envvar:: \S+\s*\n+")
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1]}`" if match.group(1) else f"`{target}`"


class DropEnvvarDirectives(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _DIRECTIVE.sub("", obj.docstring.value, count=1)
            obj.docstring.value = _ROLE.sub(_role, text)
