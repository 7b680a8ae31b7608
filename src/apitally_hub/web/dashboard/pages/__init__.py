"""The dashboard's page families: each module has ``routes(dashboard) -> list[Route]`` (gathered by
:mod:`apitally_hub.web.dashboard.routes`)."""
