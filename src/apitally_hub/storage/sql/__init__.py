"""What both SQL backends share: the statements (functions over a transaction, :class:`.tx.Tx`) for
reads, writes, alerting and per-app settings, the dialect differences (:mod:`.dialect`), and the
store built on them (:mod:`.store`); each backend's folder adds its connection and migrations."""
