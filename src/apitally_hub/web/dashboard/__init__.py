"""The hub's web dashboard, served at ``/``: server-rendered HTML pages over the query layer
(:class:`~apitally_hub.query.service.QueryService`, the same numbers as the JSON API), with a
vendored chart library (uPlot) and a little JavaScript for charts and live refresh.

- :mod:`.site`: the :class:`~.site.Dashboard` — the page guard (login, CSRF, security headers,
  HTML error pages) and rendering in a worker thread;
- :mod:`.routes`: the routes of every page family and the static files;
- :mod:`.session`: login with a hub token, signed session cookies, CSRF tokens;
- :mod:`.templating`: the Jinja2 environment (autoescaping, control characters made visible,
  number and time formats);
- :mod:`.views`: what a page's URL says (app, time range, filters) and links that keep it;
- :mod:`.pages`: one small module per page family, each with ``routes(dashboard)``.

To add a page family, write a module with ``routes(dashboard)`` and list it in
:data:`.routes.PAGE_FAMILIES`; templates extend ``app.html`` (which draws the app's navigation,
:data:`.views.NAV`).
"""
