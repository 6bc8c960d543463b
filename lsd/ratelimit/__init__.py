"""Rate limiting: which rules apply to a request (rules.py), and token buckets shared through PostgreSQL with
local leases (limiter.py)."""
