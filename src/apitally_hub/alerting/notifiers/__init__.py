"""Notifications: their documents and channel formats (:mod:`.formats`, pure), sending one to one
channel (:mod:`.senders`), and the delivery worker that drains the outbox (:mod:`.delivery`)."""
