"""Fair scheduling across tenants: per-tenant queues in Redis, fed fairly into Dramatiq's."""
