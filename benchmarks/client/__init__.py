"""What the client (``apitally_otel``) costs an app: overhead, throughput, the garbage collector,
memory, export, request logging, a hostile hub; and the apps, variants and worker processes they
drive. Standard library only here: the workers run in the peers' virtual environments too."""
