"""What the hub (``apitally_hub``) does on a busy app: ingest, storage on SQLite and PostgreSQL,
abuse, the dashboard's pages and alert evaluation."""
