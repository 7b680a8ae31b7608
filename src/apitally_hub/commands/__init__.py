"""The ``apitally-otel`` subcommands, one module each: :mod:`.hub` (run a hub), :mod:`.report`
(print an app's report from a hub), :mod:`.alerts` (manage alerting over the JSON API),
:mod:`.demo` (see it work). Each has ``register(subparsers)`` and imports only argparse-level code
at the top, so the command line answers (with the install hint) where the ``hub`` extra is missing.
"""
