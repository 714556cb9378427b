"""Serving state, sans sockets: what happens to a message between the wire and the
user's function.

``session`` (one per connection: dispatch and lifecycle), ``ordering`` (submits
of a session in arrival order per state slot), ``execution`` (snapshot, call,
stream, time out, commit or roll back), ``resume`` (result log, parked
sessions, records for other nodes), ``gates`` (per-function concurrency and
queues), ``admission`` (token buckets, flood control, origin check, connection
caps), ``hub`` (topic subscriptions and fan-out), ``runner`` (the thread pool
for sync functions), ``metrics`` (counters for /metrics).
"""
