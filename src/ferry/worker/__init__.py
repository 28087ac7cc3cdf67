"""The worker side of Ferry: job lifecycle middleware, group-commit status writer."""
