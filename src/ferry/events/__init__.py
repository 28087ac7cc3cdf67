"""Live job events: who writes them, where they are kept, how they reach subscribers.

Every committed status change becomes a `JobEvent`. The process that committed
it (a worker, the recovery pass, or the API for create/retry/cancel) appends it
to the tenant's event log (`EventLog`), which numbers it with the tenant's next
`seq`, keeps it for replay, and publishes it on the tenant's channel (each
tenant's events of an append in one message). API processes subscribe through
Litestar's channels plugin, split the messages, and hand each event to a
feed (`follow`), which replays what a reconnecting client missed, repairs gaps
left by a full backlog, and tells the client to resync when history has run out.

What a running job's handler reports (`ctx.progress`) becomes a `ProgressEvent`:
published on the same channel with a counter of its own, kept nowhere, and sent
by the feeds in its place among the JOB_UPDATEs.
"""
