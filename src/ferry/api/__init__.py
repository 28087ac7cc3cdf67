"""HTTP routes of Ferry."""
