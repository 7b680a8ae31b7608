"""The dashboard's page families: each module has ``routes(dashboard) -> list[Route]`` (listed in
:data:`apitally_hub.dashboard.site.PAGE_MODULES`)."""
